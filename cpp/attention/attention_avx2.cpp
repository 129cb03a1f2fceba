// AVX2 instantiation of the SIMD attention kernels (compiled with -mavx2 ...): score tiles
// 6 x 16 (12 ymm accumulators), broadcast products 3 rows x 32 columns (12 accumulators).
#include "attention/attention.h"
#include "attention/attention_simd.h"
#include "common/vec_avx2.h"

namespace deepcalc {

void attention_forward_f32_avx2(const AttentionForwardParams<float>& p, int threads) {
  attention_simd::forward<vec256::F32, 6, 3, 4>(p, threads);
}
void attention_backward_f32_avx2(const AttentionBackwardParams<float>& p, int threads) {
  attention_simd::backward<vec256::F32, 6, 3, 4>(p, threads);
}
void attention_jvp_f32_avx2(const AttentionJvpParams<float>& p, int threads) {
  attention_simd::jvp<vec256::F32, 6, 3, 4>(p, threads);
}
void attention_backward_jvp_f32_avx2(const AttentionBackwardJvpParams<float>& p, int threads) {
  attention_simd::backward_jvp<vec256::F32, 6, 3, 4>(p, threads);
}

}  // namespace deepcalc
