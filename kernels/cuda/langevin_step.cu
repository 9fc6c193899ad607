// Fused device kernels for the runtime's cooperative loop (float32, contiguous NCHW buffers).
//
//   salkit_langevin_step   y_next = y − ½δ²·grad + δ·noise           (one Langevin update)
//   salkit_logit           y = log(p / (1 − p)), p clipped to [eps, 1 − eps]
//   salkit_sigmoid         p = 1 / (1 + exp(−y))
//   salkit_uncertainty     predictive / aleatoric / epistemic binary entropy (nats) over N samples
//
// Each matches the numpy/torch form in salkit.kernels (langevin.py, entropy.py) and the loop's
// in-place numpy code (runtime/loops.py). One thread per pixel, grid-stride loops, so any launch
// size covers any buffer; `noise` may be null for the noise-free steps used at prediction time.
// Exported with C linkage so NVRTC / cuModuleGetFunction can find them by name.

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {

__global__ void salkit_langevin_step(const float* __restrict__ y, const float* __restrict__ grad,
                                     const float* __restrict__ noise, float* __restrict__ y_next,
                                     float step, int64_t n) {
    const float half_step_sq = 0.5f * step * step;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float moved = y[i] - half_step_sq * grad[i];
        y_next[i] = noise ? moved + step * noise[i] : moved;
    }
}

__global__ void salkit_logit(const float* __restrict__ p, float* __restrict__ y, float eps, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float q = fminf(fmaxf(p[i], eps), 1.0f - eps);
        y[i] = logf(q / (1.0f - q));
    }
}

__global__ void salkit_sigmoid(const float* __restrict__ y, float* __restrict__ p, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        p[i] = 1.0f / (1.0f + expf(-y[i]));
    }
}

__device__ __forceinline__ float binary_entropy(float p, float eps) {
    float q = fminf(fmaxf(p, eps), 1.0f - eps);
    return -(q * logf(q) + (1.0f - q) * log1pf(-q));
}

// probs: (N, M) with M = B·H·W pixels per sample; mean, predictive, aleatoric, epistemic: (M,)
__global__ void salkit_uncertainty(const float* __restrict__ probs, int samples, int64_t m, float eps,
                                   float* __restrict__ mean, float* __restrict__ predictive,
                                   float* __restrict__ aleatoric, float* __restrict__ epistemic) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < m; i += (int64_t)gridDim.x * blockDim.x) {
        float sum = 0.0f, entropy_sum = 0.0f;
        for (int s = 0; s < samples; ++s) {
            float p = probs[(int64_t)s * m + i];
            sum += p;
            entropy_sum += binary_entropy(p, eps);
        }
        float avg = sum / samples;
        float pred = binary_entropy(avg, eps);
        float alea = entropy_sum / samples;
        mean[i] = avg;
        predictive[i] = pred;
        aleatoric[i] = alea;
        epistemic[i] = pred - alea;
    }
}

}  // extern "C"
