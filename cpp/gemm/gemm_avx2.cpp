// AVX2 instantiation of the packed GEMM (compiled with -mavx2 -mfma): f32 tile 6x16 and f64
// tile 6x8, 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers;
// narrow outputs (n <= 8 / 4) use 12x8 / 12x4, short ones (see gemm_simd::gemm) 3x32 / 3x16;
// the unpacked direct path uses up to 6 x 16 / 6 x 8, the same 12 + 2 + 1 registers.
#include "gemm/gemm.h"
#include "gemm/gemm_simd.h"
#include "gemm/gemm_vec_avx2.h"

namespace deepcalc {

void gemm_f32_avx2(const GemmParams<float>& p, int threads) {
  gemm_simd::gemm<gemm256::F32, 6, 2, 6>(p, threads);
}
void gemm_f64_avx2(const GemmParams<double>& p, int threads) {
  gemm_simd::gemm<gemm256::F64, 6, 2, 6>(p, threads);
}
void act_backward_f32_avx2(const ActBackwardParams<float>& p, int threads) {
  gemm_simd::act_backward<gemm256::F32>(p, threads);
}
void act_backward_f64_avx2(const ActBackwardParams<double>& p, int threads) {
  gemm_simd::act_backward<gemm256::F64>(p, threads);
}

}  // namespace deepcalc
