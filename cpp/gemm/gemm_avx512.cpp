// AVX-512 instantiation of the packed GEMM (compiled with -mavx512f ...): f32 tile 8x32 and
// f64 tile 8x16, 16 zmm accumulators each (Zen 4 issues one 512-bit FMA per cycle, latency 4);
// narrow outputs (n <= 16 / 8) use 16x16 / 16x8, short ones (see gemm_simd::gemm) 4x64 / 4x32;
// the unpacked direct path uses up to 12 x 32 / 12 x 16 (24 accumulators + 2 B vectors + 1 broadcast).
#include "gemm/gemm.h"
#include "gemm/gemm_simd.h"
#include "gemm/gemm_vec_avx512.h"

namespace deepcalc {

void gemm_f32_avx512(const GemmParams<float>& p, int threads) {
  gemm_simd::gemm<gemm512::F32, 8, 2, 12>(p, threads);
}
void gemm_f64_avx512(const GemmParams<double>& p, int threads) {
  gemm_simd::gemm<gemm512::F64, 8, 2, 12>(p, threads);
}
void act_backward_f32_avx512(const ActBackwardParams<float>& p, int threads) {
  gemm_simd::act_backward<gemm512::F32>(p, threads);
}
void act_backward_f64_avx512(const ActBackwardParams<double>& p, int threads) {
  gemm_simd::act_backward<gemm512::F64>(p, threads);
}

}  // namespace deepcalc
