// The AVX-512 SGEMM micro-kernel (this module is built for x86-64-v4; see
// the rules at the top of AVX512Kernels.swift: raw pointers and SIMD types
// only, `while` loops, no generic standard-library calls).

/// The single-precision GEMM micro-kernel for AVX-512, called by SwiftPrune's
/// GEMM driver after a run-time check.
public enum GEMMAVX512 {
    /// `c[r · ldc + j] += alpha · Σ_p a[p · 6 + r] · b[p · 32 + j]` for the
    /// whole 6 × 32 tile: a packed `6 × kc` sliver of A (6 values per depth)
    /// times a packed `kc × 32` sliver of B (32 values per depth). Twelve
    /// 16-lane accumulators, two B vectors and one broadcast of A: half of
    /// the 32 vector registers, so the loads never spill. The sum over `p`
    /// runs in order for every element (results do not depend on how the
    /// driver splits the work).
    @inline(never)
    public static func microKernel6x32(
        k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        alpha: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        typealias V = SIMD16<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        var ap = UnsafeRawPointer(a), bp = UnsafeRawPointer(b)
        var p = 0
        while p < k {
            let b0 = bp.loadUnaligned(as: V.self)
            let b1 = bp.loadUnaligned(fromByteOffset: 64, as: V.self)
            var x = V(repeating: ap.load(as: Float.self))
            c00.addProduct(x, b0); c01.addProduct(x, b1)
            x = V(repeating: ap.load(fromByteOffset: 4, as: Float.self))
            c10.addProduct(x, b0); c11.addProduct(x, b1)
            x = V(repeating: ap.load(fromByteOffset: 8, as: Float.self))
            c20.addProduct(x, b0); c21.addProduct(x, b1)
            x = V(repeating: ap.load(fromByteOffset: 12, as: Float.self))
            c30.addProduct(x, b0); c31.addProduct(x, b1)
            x = V(repeating: ap.load(fromByteOffset: 16, as: Float.self))
            c40.addProduct(x, b0); c41.addProduct(x, b1)
            x = V(repeating: ap.load(fromByteOffset: 20, as: Float.self))
            c50.addProduct(x, b0); c51.addProduct(x, b1)
            ap += 24; bp += 128
            p &+= 1
        }
        let s = V(repeating: alpha)
        @inline(__always) func update(_ row: Int, _ lo: V, _ hi: V) {
            let q = UnsafeMutableRawPointer(c + row &* ldc)
            var v = q.loadUnaligned(as: V.self)
            v.addProduct(s, lo)
            q.storeBytes(of: v, as: V.self)
            var w = q.loadUnaligned(fromByteOffset: 64, as: V.self)
            w.addProduct(s, hi)
            q.storeBytes(of: w, toByteOffset: 64, as: V.self)
        }
        update(0, c00, c01); update(1, c10, c11); update(2, c20, c21)
        update(3, c30, c31); update(4, c40, c41); update(5, c50, c51)
    }
}
