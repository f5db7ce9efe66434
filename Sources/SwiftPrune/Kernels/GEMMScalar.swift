import SwiftPrunePrefetch

/// A scalar type with a register-blocked GEMM micro-kernel.
///
/// The micro-kernel multiplies a packed `MR × kc` sliver of A by a packed
/// `kc × NR` sliver of B and adds `alpha` times the product to an `MR × NR`
/// tile of C. On x86-64-v3 (AVX2 + FMA, 16 vector registers) the tile is
/// 6 × 16 for `Float` (12 accumulators of 8 lanes) and 6 × 8 for `Double`
/// (12 accumulators of 4 lanes): the 12 accumulators, two B vectors and one
/// broadcast of A fill the register file.
public protocol GEMMScalar: BinaryFloatingPoint {
    /// Rows of the micro-tile.
    static var gemmMR: Int { get }
    /// Columns of the micro-tile.
    static var gemmNR: Int { get }
    /// `c[r * ldc + j] += alpha * Σ_p a[p * MR + r] * b[p * NR + j]` for the whole tile.
    static func gemmMicroKernel(
        _ kc: Int, _ a: UnsafePointer<Self>, _ b: UnsafePointer<Self>,
        _ alpha: Self, _ c: UnsafeMutablePointer<Self>, _ ldc: Int)
}

@inline(__always)
func loadVector<V: SIMD>(_ pointer: UnsafePointer<V.Scalar>, _: V.Type = V.self) -> V {
    UnsafeRawPointer(pointer).loadUnaligned(as: V.self)
}

@inline(__always)
func storeVector<V: SIMD>(_ vector: V, _ pointer: UnsafeMutablePointer<V.Scalar>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: V.self)
}

extension Float: GEMMScalar {
    @inlinable public static var gemmMR: Int { 6 }
    @inlinable public static var gemmNR: Int { 16 }

    public static func gemmMicroKernel(
        _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        _ alpha: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        typealias V = SIMD8<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        @inline(__always) func step(_ ap: UnsafePointer<Float>, _ bp: UnsafePointer<Float>) {
            let b0: V = loadVector(bp), b1: V = loadVector(bp + 8)
            var x = V(repeating: ap[0])
            c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = V(repeating: ap[1])
            c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            x = V(repeating: ap[2])
            c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
            x = V(repeating: ap[3])
            c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
            x = V(repeating: ap[4])
            c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
            x = V(repeating: ap[5])
            c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
        }
        // Four depth steps per trip (one loop branch and two pointer bumps per 48
        // FMAs instead of per 12), with A's packed sliver prefetched four trips
        // ahead (two lines per trip cover its 96 bytes): the sliver streams from
        // L2 (the block of A is reread for every B panel) while B's 16 KiB panel
        // stays in L1. Same operations in the same order per accumulator as one
        // step per trip: identical results.
        var ap = a, bp = b
        var p = 0
        while p &+ 4 <= kc {
            swiftprune_prefetch_read(ap + 96)
            swiftprune_prefetch_read(ap + 112)
            step(ap, bp); step(ap + 6, bp + 16); step(ap + 12, bp + 32); step(ap + 18, bp + 48)
            ap += 24; bp += 64
            p &+= 4
        }
        while p < kc {
            step(ap, bp)
            ap += 6; bp += 16
            p &+= 1
        }
        let s = V(repeating: alpha)
        @inline(__always) func update(_ row: Int, _ lo: V, _ hi: V) {
            let p = c + row * ldc
            storeVector((loadVector(p) as V).addingProduct(s, lo), p)
            storeVector((loadVector(p + 8) as V).addingProduct(s, hi), p + 8)
        }
        update(0, c00, c01); update(1, c10, c11); update(2, c20, c21)
        update(3, c30, c31); update(4, c40, c41); update(5, c50, c51)
    }
}

extension Double: GEMMScalar {
    @inlinable public static var gemmMR: Int { 6 }
    @inlinable public static var gemmNR: Int { 8 }

    public static func gemmMicroKernel(
        _ kc: Int, _ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>,
        _ alpha: Double, _ c: UnsafeMutablePointer<Double>, _ ldc: Int
    ) {
        typealias V = SIMD4<Double>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        var ap = a, bp = b
        for _ in 0 ..< kc {
            let b0: V = loadVector(bp), b1: V = loadVector(bp + 4)
            var x = V(repeating: ap[0])
            c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = V(repeating: ap[1])
            c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            x = V(repeating: ap[2])
            c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
            x = V(repeating: ap[3])
            c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
            x = V(repeating: ap[4])
            c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
            x = V(repeating: ap[5])
            c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
            ap += 6; bp += 8
        }
        let s = V(repeating: alpha)
        @inline(__always) func update(_ row: Int, _ lo: V, _ hi: V) {
            let p = c + row * ldc
            storeVector((loadVector(p) as V).addingProduct(s, lo), p)
            storeVector((loadVector(p + 4) as V).addingProduct(s, hi), p + 4)
        }
        update(0, c00, c01); update(1, c10, c11); update(2, c20, c21)
        update(3, c30, c31); update(4, c40, c41); update(5, c50, c51)
    }
}
