// Generated from micro_ops/status.h by tools/sync_arduino.py: edit micro_ops/, not this file.
/* Copyright 2025 The tflm-patch Authors. All Rights Reserved.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
==============================================================================*/

// The result of an engine call, and the macro that passes a failure up.

#ifndef TFLM_PATCH_MICRO_OPS_STATUS_H_
#define TFLM_PATCH_MICRO_OPS_STATUS_H_

#include <cstdint>

namespace tflm_patch {

// `message` is a static string, nullptr on success; `key` optionally names
// the options key concerned (static string or nullptr); `layer` is the layer
// concerned, or -1.
struct Status {
  const char* message;
  const char* key;
  int32_t layer;
  bool ok() const { return message == nullptr; }
};

inline Status OkStatus() { return Status{nullptr, nullptr, -1}; }

inline Status ErrorStatus(const char* message, const char* key = nullptr,
                          int32_t layer = -1) {
  return Status{message, key, layer};
}

}  // namespace tflm_patch

#define TFLM_PATCH_RETURN_IF_ERROR(expr)         \
  do {                                           \
    const ::tflm_patch::Status status_ = (expr); \
    if (!status_.ok()) return status_;           \
  } while (0)

#endif  // TFLM_PATCH_MICRO_OPS_STATUS_H_
