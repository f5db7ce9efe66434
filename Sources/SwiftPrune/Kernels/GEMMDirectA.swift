import SwiftPrunePrefetch

/// The float32 AVX2 micro-kernel of ``GEMMDriver`` reading A in place.
///
/// When C has few columns (`n <= GEMMDriver.directAMaxColumns`, e.g. a
/// weight times a 64-column block of activations), each packed sliver of A
/// would serve only a few B panels: packing A then costs about as much
/// memory traffic as the multiply itself does. Reading the six rows of A
/// directly (six sequential streams, each used for every B panel while its
/// `kc` values are in L1) skips the copy. The operations and their order
/// are those of `Float.gemmMicroKernel`, so the results are bit-identical.
///
/// `a` points at `A[row, p0]` (row stride `lda`); rows past `rows` repeat
/// the last valid row (their results land in a scratch tile and are dropped).
///
/// `ahead`, when given, points at the same depth of the *next* six rows: one
/// cache line of each is prefetched every 16 steps, so the next sliver
/// arrives from memory while this one is multiplied (six short streams of
/// `kc` values each are too short for the hardware prefetcher to ramp up).
@inline(__always)
func sgemmMicroKernelDirectA(
    _ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, rows: Int, _ b: UnsafePointer<Float>,
    _ alpha: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, ahead: UnsafePointer<Float>? = nil
) {
    typealias V = SIMD8<Float>
    let last = rows &- 1
    let a0 = a, a1 = a + min(1, last) &* lda, a2 = a + min(2, last) &* lda
    let a3 = a + min(3, last) &* lda, a4 = a + min(4, last) &* lda, a5 = a + min(5, last) &* lda
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var bp = b
    var p = 0
    while p < kc {
        // Steps in runs of 16 (one cache line of each row): the prefetches stay out of the inner loop.
        let stop = min(kc, p &+ 16)
        if let ahead {
            for r in 0 ..< 6 { swiftprune_prefetch_read(ahead + (r &* lda &+ p)) }
        }
        while p < stop {
            let b0: V = loadVector(bp), b1: V = loadVector(bp + 8)
            var x = V(repeating: a0[p])
            c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = V(repeating: a1[p])
            c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            x = V(repeating: a2[p])
            c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
            x = V(repeating: a3[p])
            c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
            x = V(repeating: a4[p])
            c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
            x = V(repeating: a5[p])
            c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
            bp += 16
            p &+= 1
        }
    }
    let s = V(repeating: alpha)
    @inline(__always) func update(_ row: Int, _ lo: V, _ hi: V) {
        let q = c + row &* ldc
        storeVector((loadVector(q) as V).addingProduct(s, lo), q)
        storeVector((loadVector(q + 8) as V).addingProduct(s, hi), q + 8)
    }
    update(0, c00, c01); update(1, c10, c11); update(2, c20, c21)
    update(3, c30, c31); update(4, c40, c41); update(5, c50, c51)
}

/// The float64 twin of ``sgemmMicroKernelDirectA(_:_:_:rows:_:_:_:_:)``: a
/// 6 × 8 tile with A read in place, the operations and their order those of
/// `Double.gemmMicroKernel` (bit-identical). Used where C is at most eight
/// 8-column panels wide, e.g. the first product of each block of the SVD's
/// back-transformation (`Zᵀ V`, 32 columns), whose packing cost as much as the
/// multiply.
@inline(__always)
func dgemmMicroKernelDirectA(
    _ kc: Int, _ a: UnsafePointer<Double>, _ lda: Int, rows: Int, _ b: UnsafePointer<Double>,
    _ alpha: Double, _ c: UnsafeMutablePointer<Double>, _ ldc: Int
) {
    typealias V = SIMD4<Double>
    let last = rows &- 1
    let a0 = a, a1 = a + min(1, last) &* lda, a2 = a + min(2, last) &* lda
    let a3 = a + min(3, last) &* lda, a4 = a + min(4, last) &* lda, a5 = a + min(5, last) &* lda
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var bp = b
    for p in 0 ..< kc {
        let b0: V = loadVector(bp), b1: V = loadVector(bp + 4)
        var x = V(repeating: a0[p])
        c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
        x = V(repeating: a1[p])
        c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
        x = V(repeating: a2[p])
        c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
        x = V(repeating: a3[p])
        c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
        x = V(repeating: a4[p])
        c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
        x = V(repeating: a5[p])
        c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
        bp += 8
    }
    let s = V(repeating: alpha)
    @inline(__always) func update(_ row: Int, _ lo: V, _ hi: V) {
        let q = c + row &* ldc
        storeVector((loadVector(q) as V).addingProduct(s, lo), q)
        storeVector((loadVector(q + 4) as V).addingProduct(s, hi), q + 4)
    }
    update(0, c00, c01); update(1, c10, c11); update(2, c20, c21)
    update(3, c30, c31); update(4, c40, c41); update(5, c50, c51)
}
