// tflm-patch for Arduino: the PATCH_STAGE operator for TensorFlow Lite Micro.
//
// A model converted with `tflm-patch convert` runs its memory-heavy first
// stage patch by patch inside one custom op. Register it next to the builtin
// ops your model uses:
//
//   #include <TensorFlowLite.h>
//   #include <TFLMPatch.h>
//   static tflite::MicroMutableOpResolver<8> resolver;
//   resolver.AddCustom(tflm_patch::kPatchStageCustomName,
//                      tflm_patch::Register_PATCH_STAGE());
//
// Its per-patch buffers come from TFLM's arena (a scratch buffer), so size
// the arena with the number `tflm-patch convert` prints.
#ifndef TFLM_PATCH_ARDUINO_TFLMPATCH_H_
#define TFLM_PATCH_ARDUINO_TFLMPATCH_H_

#include "patch_stage.h"

#endif  // TFLM_PATCH_ARDUINO_TFLMPATCH_H_
