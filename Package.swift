// swift-tools-version:5.10
import PackageDescription

// Swift's default x86-64 target lowers SIMD fused multiply-adds to libm calls;
// x86-64-v3 (AVX2 + FMA) is the baseline every kernel is built for. Anything
// beyond it (AVX-512) must be chosen at run time.
//
// SwiftPruneAVX512 holds the AVX-512 (x86-64-v4) kernels: raw-pointer functions
// only, called by SwiftPrune when `CPUFeatures.hasAVX512` says the CPU has it;
// SwiftPruneAVX512VNNI the int8 kernels that also need AVX512-VNNI (`hasAVX512VNNI`).
#if arch(x86_64)
let targetFlags: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v3"])]
let avx512Flags: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v4"])]
let avx512VNNIFlags: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v4", "-Xcc", "-mavx512vnni"])]
#else
let targetFlags: [SwiftSetting] = []
let avx512Flags: [SwiftSetting] = []
let avx512VNNIFlags: [SwiftSetting] = []
#endif

let package = Package(
    name: "SwiftPrune",
    products: [
        // The Swift API, for Swift programs.
        .library(name: "SwiftPrune", targets: ["SwiftPrune"]),
        // The C ABI (swiftprune.h) as a shared library, loaded by the Python extension.
        .library(name: "swiftprune", type: .dynamic, targets: ["SwiftPruneC"]),
    ],
    targets: [
        .target(name: "SwiftPrune", dependencies: ["SwiftPruneAVX512", "SwiftPruneAVX512VNNI", "SwiftPrunePrefetch",
                                                    "SwiftPruneShuffle", "SwiftPruneGather", "SwiftPruneClipError",
                                                    "SwiftPruneBracketScan"],
                swiftSettings: targetFlags),
        .target(name: "SwiftPruneAVX512", swiftSettings: avx512Flags),
        .target(name: "SwiftPruneAVX512VNNI", swiftSettings: avx512VNNIFlags),
        // Cache prefetch hints (static inline C wrappers of __builtin_prefetch) for the kernels.
        .target(name: "SwiftPrunePrefetch"),
        // AVX2 lane shuffles (static inline C, e.g. an 8 × 8 float transpose) Swift's SIMD types lack.
        .target(name: "SwiftPruneShuffle"),
        // Eight-float gathers by scalar loads (static inline C, _mm256_setr_ps) for the sparse matvec.
        .target(name: "SwiftPruneGather"),
        // AVX2 squared errors of a group under several quantization candidates (the "mse" clipping search).
        .target(name: "SwiftPruneClipError"),
        // AVX2 scan of the sampled magnitude-mask writer (provisional mask bytes, bracket records).
        .target(name: "SwiftPruneBracketScan"),
        // The one public C header and the per-thread last-error slot.
        .target(name: "CSwiftPrune"),
        // @_cdecl exports implementing swiftprune.h.
        .target(name: "SwiftPruneC", dependencies: ["SwiftPrune", "CSwiftPrune"], swiftSettings: targetFlags),
        .testTarget(name: "SwiftPruneTests", dependencies: ["SwiftPrune", "SwiftPruneAVX512"], swiftSettings: targetFlags),
        .testTarget(name: "SwiftPruneCTests", dependencies: ["SwiftPruneC", "CSwiftPrune"]),
    ]
)
