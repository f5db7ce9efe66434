/// The inner kernel shared by ``CSRMatrix`` and ``NMSparseMatrix``: one sparse
/// row of `W` times a dense row-major block `x`.
///
/// `y[0..<n] = Σ_t values[t] · x[columns[t], 0..<n]`. The rows of `x` are
/// contiguous, so every nonzero streams one row of `x` through 64 lanes of
/// accumulators held in registers (four `SIMD16<Float>`, eight AVX2 vectors);
/// the output row is written once. Columns of `x` are taken 64 at a time, then
/// 16, then 8, then one by one.
@inline(__always)
func sparseRowTimesDense(
    values: UnsafePointer<Float>, columns: UnsafePointer<Int32>, count: Int,
    x: UnsafePointer<Float>, n: Int, y: UnsafeMutablePointer<Float>
) {
    @inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
    var j = 0
    while j &+ 64 <= n {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        var t = 0
        while t < count {
            let v = SIMD16<Float>(repeating: values[t])
            let p = x + (Int(columns[t]) &* n &+ j)
            a0.addProduct(v, load16(p))
            a1.addProduct(v, load16(p + 16))
            a2.addProduct(v, load16(p + 32))
            a3.addProduct(v, load16(p + 48))
            t &+= 1
        }
        store(a0, y + j); store(a1, y + (j &+ 16)); store(a2, y + (j &+ 32)); store(a3, y + (j &+ 48))
        j &+= 64
    }
    while j &+ 16 <= n {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
        var t = 0
        // Two nonzeros per step: two independent accumulator chains.
        while t &+ 1 < count {
            a0.addProduct(SIMD16(repeating: values[t]), load16(x + (Int(columns[t]) &* n &+ j)))
            a1.addProduct(SIMD16(repeating: values[t &+ 1]), load16(x + (Int(columns[t &+ 1]) &* n &+ j)))
            t &+= 2
        }
        if t < count { a0.addProduct(SIMD16(repeating: values[t]), load16(x + (Int(columns[t]) &* n &+ j))) }
        store(a0 + a1, y + j)
        j &+= 16
    }
    if j &+ 8 <= n {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var t = 0
        while t &+ 1 < count {
            a0.addProduct(SIMD8(repeating: values[t]), load8(x + (Int(columns[t]) &* n &+ j)))
            a1.addProduct(SIMD8(repeating: values[t &+ 1]), load8(x + (Int(columns[t &+ 1]) &* n &+ j)))
            t &+= 2
        }
        if t < count { a0.addProduct(SIMD8(repeating: values[t]), load8(x + (Int(columns[t]) &* n &+ j))) }
        store(a0 + a1, y + j)
        j &+= 8
    }
    while j < n {
        // Four partial sums, so a long row is not one serial chain.
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var t = 0
        while t &+ 3 < count {
            s0 += values[t] * x[Int(columns[t]) &* n &+ j]
            s1 += values[t &+ 1] * x[Int(columns[t &+ 1]) &* n &+ j]
            s2 += values[t &+ 2] * x[Int(columns[t &+ 2]) &* n &+ j]
            s3 += values[t &+ 3] * x[Int(columns[t &+ 3]) &* n &+ j]
            t &+= 4
        }
        while t < count { s0 += values[t] * x[Int(columns[t]) &* n &+ j]; t &+= 1 }
        y[j] = (s0 + s1) + (s2 + s3)
        j &+= 1
    }
}

/// Validates the shapes shared by every `W @ x` kernel and returns the
/// number of output elements `rows · n`.
func checkMatmulShapes(rows: Int, columns: Int, xRows: Int, n: Int, xCount: Int, yCount: Int) throws -> Int {
    guard rows >= 0, columns >= 0 else {
        throw SwiftPruneError.value("matrix shape (\(rows), \(columns)) has a negative dimension")
    }
    guard xRows >= 0, n >= 0 else { throw SwiftPruneError.value("x shape (\(xRows), \(n)) has a negative dimension") }
    guard xRows == columns else {
        throw SwiftPruneError.value(
            "x has \(xRows) rows but the matrix has \(columns) columns (W @ x needs x of shape (in_features, n))")
    }
    let xElements = try Shape.elementCount([xRows, n])
    guard xElements == xCount else { throw SwiftPruneError.value("x: shape (\(xRows), \(n)) needs \(xElements) elements, got \(xCount)") }
    let yElements = try Shape.elementCount([rows, n])
    guard yElements == yCount else { throw SwiftPruneError.value("y: shape (\(rows), \(n)) needs \(yElements) elements, got \(yCount)") }
    return yElements
}
