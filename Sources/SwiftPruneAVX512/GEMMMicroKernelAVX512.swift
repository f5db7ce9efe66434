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

    /// The same for a 12 × 32 tile (A packed 12 values per depth): 24
    /// accumulators, two B vectors and a broadcast of A in 27 of the 32
    /// registers. Per depth step two B loads feed 24 fused multiply-adds
    /// instead of 12, and C is updated half as often per flop.
    @inline(never)
    public static func microKernel12x32(
        k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        alpha: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        typealias V = SIMD16<Float>
        var c0l = V(), c0h = V()
        var c1l = V(), c1h = V()
        var c2l = V(), c2h = V()
        var c3l = V(), c3h = V()
        var c4l = V(), c4h = V()
        var c5l = V(), c5h = V()
        var c6l = V(), c6h = V()
        var c7l = V(), c7h = V()
        var c8l = V(), c8h = V()
        var c9l = V(), c9h = V()
        var c10l = V(), c10h = V()
        var c11l = V(), c11h = V()
        var ap = UnsafeRawPointer(a), bp = UnsafeRawPointer(b)
        var p = 0
        while p < k {
            let b0 = bp.loadUnaligned(as: V.self)
            let b1 = bp.loadUnaligned(fromByteOffset: 64, as: V.self)
            let x0 = V(repeating: ap.load(fromByteOffset: 0, as: Float.self))
            c0l.addProduct(x0, b0); c0h.addProduct(x0, b1)
            let x1 = V(repeating: ap.load(fromByteOffset: 4, as: Float.self))
            c1l.addProduct(x1, b0); c1h.addProduct(x1, b1)
            let x2 = V(repeating: ap.load(fromByteOffset: 8, as: Float.self))
            c2l.addProduct(x2, b0); c2h.addProduct(x2, b1)
            let x3 = V(repeating: ap.load(fromByteOffset: 12, as: Float.self))
            c3l.addProduct(x3, b0); c3h.addProduct(x3, b1)
            let x4 = V(repeating: ap.load(fromByteOffset: 16, as: Float.self))
            c4l.addProduct(x4, b0); c4h.addProduct(x4, b1)
            let x5 = V(repeating: ap.load(fromByteOffset: 20, as: Float.self))
            c5l.addProduct(x5, b0); c5h.addProduct(x5, b1)
            let x6 = V(repeating: ap.load(fromByteOffset: 24, as: Float.self))
            c6l.addProduct(x6, b0); c6h.addProduct(x6, b1)
            let x7 = V(repeating: ap.load(fromByteOffset: 28, as: Float.self))
            c7l.addProduct(x7, b0); c7h.addProduct(x7, b1)
            let x8 = V(repeating: ap.load(fromByteOffset: 32, as: Float.self))
            c8l.addProduct(x8, b0); c8h.addProduct(x8, b1)
            let x9 = V(repeating: ap.load(fromByteOffset: 36, as: Float.self))
            c9l.addProduct(x9, b0); c9h.addProduct(x9, b1)
            let x10 = V(repeating: ap.load(fromByteOffset: 40, as: Float.self))
            c10l.addProduct(x10, b0); c10h.addProduct(x10, b1)
            let x11 = V(repeating: ap.load(fromByteOffset: 44, as: Float.self))
            c11l.addProduct(x11, b0); c11h.addProduct(x11, b1)
            ap += 48; bp += 128
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
        update(0, c0l, c0h)
        update(1, c1l, c1h)
        update(2, c2l, c2h)
        update(3, c3l, c3h)
        update(4, c4l, c4h)
        update(5, c5l, c5h)
        update(6, c6l, c6h)
        update(7, c7l, c7h)
        update(8, c8l, c8h)
        update(9, c9l, c9h)
        update(10, c10l, c10h)
        update(11, c11l, c11h)
    }
}
