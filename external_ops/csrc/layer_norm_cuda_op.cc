// Paddle side of the CUDA kernels: tensors in, raw pointers and Paddle's stream to the launchers of
// layer_norm_cuda.cu. Compiled only in CUDA builds (setup.py adds it with -DPADDLEMIX_EVA_WITH_CUDA).
#include "layer_norm.h"
#include "layer_norm_cuda.h"

namespace paddlemix_eva {
namespace {

LnDtype ln_dtype(paddle::DataType dtype) {
  switch (dtype) {
    case paddle::DataType::FLOAT32:
      return LnDtype::kFloat32;
    case paddle::DataType::FLOAT64:
      return LnDtype::kFloat64;
    case paddle::DataType::FLOAT16:
      return LnDtype::kFloat16;
    case paddle::DataType::BFLOAT16:
      return LnDtype::kBFloat16;
    default:
      PD_THROW("fused_layer_norm (CUDA): unsupported dtype ", phi::DataTypeToString(dtype));
  }
}

// Paddle's stream of a GPU tensor. `Tensor::stream()` is declared only by the headers of a CUDA build of Paddle
// (setup.py compiles this file with PADDLE_WITH_CUDA there); the other branch exists for check_cuda_compile.sh,
// which compile-checks this file against a CPU Paddle's headers and never links or runs it.
cudaStream_t stream_of(const paddle::Tensor& x) {
#if defined(PADDLE_WITH_CUDA)
  return x.stream();
#else
  PD_THROW("fused_layer_norm: this library was compiled without PADDLE_WITH_CUDA and has no CUDA stream for ",
           x.place().DebugString());
#endif
}

void check(cudaError_t err, const char* what) {
  PD_CHECK(err == cudaSuccess, "fused_layer_norm: ", what, " failed: ", cudaGetErrorString(err));
}

}  // namespace

std::vector<paddle::Tensor> layer_norm_forward_cuda(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                    const paddle::Tensor& bias, float epsilon, int64_t rows,
                                                    int64_t hidden) {
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  auto mean = paddle::empty({rows}, paddle::DataType::FLOAT32, x.place());
  auto inv_std = paddle::empty({rows}, paddle::DataType::FLOAT32, x.place());
  check(launch_layer_norm_forward(ln_dtype(x.dtype()), ln_dtype(scale.dtype()), x.data(), scale.data(), bias.data(),
                                  y.data(), mean.data<float>(), inv_std.data<float>(), rows, hidden, epsilon,
                                  stream_of(x)),
        "forward kernel launch");
  return {y, mean, inv_std};
}

std::vector<paddle::Tensor> layer_norm_backward_cuda(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                     const paddle::Tensor& mean, const paddle::Tensor& inv_std,
                                                     const paddle::Tensor& dy, int64_t rows, int64_t hidden) {
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dscale = paddle::empty(scale.shape(), scale.dtype(), x.place());
  auto dbias = paddle::empty(scale.shape(), scale.dtype(), x.place());
  auto workspace = paddle::empty({layer_norm_backward_workspace_floats(rows, hidden)}, paddle::DataType::FLOAT32,
                                 x.place());
  check(launch_layer_norm_backward(ln_dtype(x.dtype()), ln_dtype(scale.dtype()), x.data(), scale.data(),
                                   mean.data<float>(), inv_std.data<float>(), dy.data(), dx.data(), dscale.data(),
                                   dbias.data(), workspace.data<float>(), rows, hidden, stream_of(x)),
        "backward kernel launch");
  return {dx, dscale, dbias};
}

}  // namespace paddlemix_eva
