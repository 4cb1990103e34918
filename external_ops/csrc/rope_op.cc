// Registration of the RoPE ops on packed qkv [B, N, 3, heads, d] (float32, CPU):
//   fused_rope_qkv        -> Out, qkv's layout, q and k rotated
//   fused_rope_qkv_split  -> Q (times q_scale), K, V, each [B, heads, N, d]
// The tables cos / sin [N, d] are constants: they get no gradient (the wrapper falls back when they need one).
#include "fused_cpu_ops.h"

namespace {

using paddle::Tensor;

void check_float_cpu(const Tensor& t, const char* op, const char* name) {
  PD_CHECK(t.is_cpu() && t.dtype() == paddle::DataType::FLOAT32, op, ": ", name, " must be a float32 CPU tensor, got ",
           phi::DataTypeToString(t.dtype()));
  PD_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (call .contiguous() on strided views)");
}

void check_inputs(const Tensor& qkv, const Tensor& cos, const Tensor& sin, const char* op) {
  check_float_cpu(qkv, op, "QKV");
  check_float_cpu(cos, op, "Cos");
  check_float_cpu(sin, op, "Sin");
  const auto& s = qkv.shape();
  PD_CHECK(s.size() == 5 && s[2] == 3, op, ": QKV must be packed as [batch, tokens, 3, heads, head_dim]");
  PD_CHECK(s[4] % 2 == 0, op, ": head_dim must be even (interleaved pairs), got ", s[4]);
  const std::vector<int64_t> table = {s[1], s[4]};
  PD_CHECK(cos.shape() == table && sin.shape() == table, op, ": Cos and Sin must be [tokens, head_dim] = [", s[1],
           ", ", s[4], "]");
}

Tensor dense(const Tensor& t) { return !t.initialized() || t.is_contiguous() ? t : t.contiguous(); }

std::vector<Tensor> RopeForward(const Tensor& qkv, const Tensor& cos, const Tensor& sin) {
  check_inputs(qkv, cos, sin, "fused_rope_qkv");
  return {paddlemix_eva::rope_qkv_forward_cpu(qkv, cos, sin)};
}

std::vector<Tensor> RopeBackward(const Tensor& cos, const Tensor& sin, const Tensor& dy) {
  return {paddlemix_eva::rope_qkv_backward_cpu(dense(dy), cos, sin)};
}

std::vector<Tensor> RopeSplitForward(const Tensor& qkv, const Tensor& cos, const Tensor& sin, float q_scale) {
  check_inputs(qkv, cos, sin, "fused_rope_qkv_split");
  return paddlemix_eva::rope_qkv_split_forward_cpu(qkv, cos, sin, q_scale);
}

std::vector<Tensor> RopeSplitBackward(const Tensor& cos, const Tensor& sin, const Tensor& dq, const Tensor& dk,
                                      const Tensor& dv, float q_scale) {
  PD_CHECK(dq.initialized() || dk.initialized() || dv.initialized(), "fused_rope_qkv_split_grad: no gradient");
  return {paddlemix_eva::rope_qkv_split_backward_cpu(dense(dq), dense(dk), dense(dv), cos, sin, q_scale)};
}

std::vector<std::vector<int64_t>> RopeShape(const std::vector<int64_t>& qkv, const std::vector<int64_t>&,
                                            const std::vector<int64_t>&) {
  return {qkv};
}

std::vector<std::vector<int64_t>> RopeSplitShape(const std::vector<int64_t>& qkv, const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&) {
  const std::vector<int64_t> out = qkv.size() == 5 ? std::vector<int64_t>{qkv[0], qkv[3], qkv[1], qkv[4]} : qkv;
  return {out, out, out};
}

std::vector<paddle::DataType> RopeDtype(const paddle::DataType& qkv, const paddle::DataType&,
                                        const paddle::DataType&) {
  return {qkv};
}

std::vector<paddle::DataType> RopeSplitDtype(const paddle::DataType& qkv, const paddle::DataType&,
                                             const paddle::DataType&) {
  return {qkv, qkv, qkv};
}

}  // namespace

PD_BUILD_OP(fused_rope_qkv)
    .Inputs({"QKV", "Cos", "Sin"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(RopeForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RopeShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RopeDtype));

PD_BUILD_GRAD_OP(fused_rope_qkv)
    .Inputs({"Cos", "Sin", paddle::Grad("Out")})
    .Outputs({paddle::Grad("QKV")})
    .SetKernelFn(PD_KERNEL(RopeBackward));

PD_BUILD_OP(fused_rope_qkv_split)
    .Inputs({"QKV", "Cos", "Sin"})
    .Outputs({"Q", "K", "V"})
    .Attrs({"q_scale: float"})
    .SetKernelFn(PD_KERNEL(RopeSplitForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RopeSplitShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RopeSplitDtype));

PD_BUILD_GRAD_OP(fused_rope_qkv_split)
    .Inputs({"Cos", "Sin", paddle::Grad("Q"), paddle::Grad("K"), paddle::Grad("V")})
    .Outputs({paddle::Grad("QKV")})
    .Attrs({"q_scale: float"})
    .SetKernelFn(PD_KERNEL(RopeSplitBackward));
