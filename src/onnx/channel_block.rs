//! The channel block onnxruntime's CPU kernels work in on this host, which `--prune-neurons`
//! aligns pruned layers to when it writes ONNX.
//!
//! onnxruntime's NCHWc transformer moves a grouped conv to its blocked kernels only when the
//! channel count fits MLAS's `NchwcBlockSize` (older versions: a multiple of it; 1.32 pads a
//! multiple of 4 up to it); otherwise the conv falls back to im2col + GEMM, with reorders
//! around it where its neighbours stay blocked. A multiple of the block is what every version
//! takes, and costs no conv work over 4 since the padded lanes are computed anyway. MLAS sets
//! the block in
//! `platform.cpp` from the vector width: 8 floats on x86-64 (SSE2/AVX2), 16 when AVX-512F is
//! present. On aarch64 its NCHWc kernels exist only in builds with `MLAS_USE_ARM_NEON_NCHWC`
//! (block 16); default builds convolve through GEMM, whose NEON kernels take 4 floats a vector,
//! so 4 is what alignment can do for them. Other targets get 1 (no alignment).

/// The channel count onnxruntime blocks by on the host running nnopt.
pub fn channel_block() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            16
        } else {
            8
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        4
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_block_follows_the_vector_width() {
        let want = if std::arch::is_x86_feature_detected!("avx512f") {
            16
        } else {
            8
        };
        assert_eq!(super::channel_block(), want);
    }
}
