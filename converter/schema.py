"""The TFLite flatbuffer schema, as shipped by the tflite-micro wheel.

Using the wheel's generated code keeps the schema in step with the TFLM we
verify against, and avoids a second copy of the schema in this repo.
"""
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema  # noqa: F401

BuiltinOperator = schema.BuiltinOperator
BuiltinOptions = schema.BuiltinOptions
TensorType = schema.TensorType
Padding = schema.Padding
ActivationFunctionType = schema.ActivationFunctionType

BUILTIN_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
TENSOR_TYPE_NAMES = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
