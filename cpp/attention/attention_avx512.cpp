// AVX-512 instantiation of the SIMD attention kernels (compiled with -mavx512f ...): score tiles
// 8 x 32 (16 zmm accumulators), broadcast products 4 rows x 64 columns (16 accumulators).
#include "attention/attention.h"
#include "attention/attention_simd.h"
#include "common/vec_avx512.h"

namespace deepcalc {

void attention_forward_f32_avx512(const AttentionForwardParams<float>& p, int threads) {
  attention_simd::forward<vec512::F32, 8, 4, 4>(p, threads);
}
void attention_backward_f32_avx512(const AttentionBackwardParams<float>& p, int threads) {
  attention_simd::backward<vec512::F32, 8, 4, 4>(p, threads);
}
void attention_jvp_f32_avx512(const AttentionJvpParams<float>& p, int threads) {
  attention_simd::jvp<vec512::F32, 8, 4, 4>(p, threads);
}
void attention_backward_jvp_f32_avx512(const AttentionBackwardJvpParams<float>& p, int threads) {
  attention_simd::backward_jvp<vec512::F32, 8, 4, 4>(p, threads);
}

}  // namespace deepcalc
