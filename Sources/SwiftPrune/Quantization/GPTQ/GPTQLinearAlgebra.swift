/// The small dense double-precision linear algebra GPTQ needs: a Gram
/// matrix, a Cholesky factorization, a triangular inverse and the lazy block
/// update `W -= E · U`. Row-major `[Double]` matrices.
///
/// Straightforward SIMD loops, parallel over rows or column blocks; once the
/// shared blocked GEMM lands, `gram` and `subtractProduct` are the calls to
/// route to it.
public enum GPTQLinearAlgebra {
    @inline(__always)
    static func load4(_ p: UnsafePointer<Double>) -> SIMD4<Double> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Double>.self)
    }

    /// Σ a[i] b[i] for i < n.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double {
        var s0 = SIMD4<Double>(repeating: 0), s1 = SIMD4<Double>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            s0.addProduct(load4(a + i), load4(b + i))
            s1.addProduct(load4(a + i + 4), load4(b + i + 4))
            i += 8
        }
        var total = (s0 + s1).sum()
        while i < n { total += a[i] * b[i]; i += 1 }
        return total
    }

    /// y[i] -= alpha * x[i] for i < n.
    @inline(__always)
    static func axpy(_ alpha: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int) {
        for i in 0 ..< n { y[i] -= alpha * x[i] }
    }

    /// `XᵀX / samples` (features × features) of `x` (samples × features).
    public static func gram(_ x: UnsafeBufferPointer<Double>, samples: Int, features: Int) -> [Double] {
        let n = features
        var transposed = [Double](repeating: 0, count: samples * n)
        transposed.withUnsafeMutableBufferPointer { t in
            for s in 0 ..< samples {
                for f in 0 ..< n { t[f * samples + s] = x[s * n + f] }
            }
        }
        var h = [Double](repeating: 0, count: n * n)
        let scale = 1 / Double(Swift.max(samples, 1))
        let workers = Threading.workerCount(for: n * n * samples / 2, minimumPerWorker: 1 << 20)
        transposed.withUnsafeBufferPointer { t in
            h.withUnsafeMutableBufferPointer { hb in
                let tBase = t.baseAddress!, hBase = hb.baseAddress!
                parallelFor(workers: workers) { worker in
                    var i = worker
                    while i < n {
                        let row = tBase + i * samples
                        for j in 0 ... i {
                            let v = dot(row, tBase + j * samples, samples) * scale
                            hBase[i * n + j] = v
                            hBase[j * n + i] = v
                        }
                        i += workers
                    }
                }
            }
        }
        return h
    }

    /// The lower Cholesky factor of the symmetric matrix `a` (n × n), in place
    /// (the upper triangle is zeroed).
    /// - Throws: ``SwiftPruneError`` if `a` is not positive definite.
    public static func cholesky(_ a: inout [Double], n: Int) throws {
        var failedAt = -1
        a.withUnsafeMutableBufferPointer { m in
            let base = m.baseAddress!
            for j in 0 ..< n {
                let rowJ = base + j * n
                let d = rowJ[j] - dot(rowJ, rowJ, j)
                guard d > 0 && d.isFinite else { failedAt = j; return }
                let pivot = d.squareRoot()
                rowJ[j] = pivot
                let below = n - j - 1
                let workers = Threading.workerCount(for: below * Swift.max(j, 1), minimumPerWorker: 1 << 16)
                parallelFor(workers: workers) { worker in
                    for i in partitionRange(below, parts: workers, index: worker) {
                        let rowI = base + (j + 1 + i) * n
                        rowI[j] = (rowI[j] - dot(rowI, rowJ, j)) / pivot
                    }
                }
            }
            for i in 0 ..< n { for j in (i + 1) ..< n where j < n { base[i * n + j] = 0 } }
        }
        if failedAt >= 0 {
            throw SwiftPruneError.value(
                "the Hessian XᵀX is not positive definite (pivot \(failedAt)); increase damp or add calibration samples")
        }
    }

    /// The inverse of the lower-triangular `l` (n × n, nonzero diagonal), lower
    /// triangular. Parallel over blocks of columns.
    public static func invertLower(_ l: [Double], n: Int) -> [Double] {
        var x = [Double](repeating: 0, count: n * n)
        let block = 64
        let blocks = (n + block - 1) / block
        let workers = Threading.workerCount(for: n * n * n / 6, minimumPerWorker: 1 << 20)
        l.withUnsafeBufferPointer { lb in
            x.withUnsafeMutableBufferPointer { xb in
                let lBase = lb.baseAddress!, xBase = xb.baseAddress!
                parallelFor(workers: Swift.min(workers, Swift.max(blocks, 1))) { worker in
                    var b = worker
                    while b < blocks {
                        let c0 = b * block, c1 = Swift.min(n, c0 + block)
                        // Rows i >= c0: X[i, c0..<min(c1, i+1)].
                        for i in c0 ..< n {
                            let rowX = xBase + i * n, rowL = lBase + i * n
                            let stop = Swift.min(c1, i)
                            if stop > c0 {
                                for k in c0 ..< i {
                                    let coefficient = rowL[k]
                                    let from = c0, to = Swift.min(stop, k + 1)
                                    if to > from {
                                        axpy(coefficient, xBase + k * n + from, rowX + from, to - from)
                                    }
                                }
                                let inverse = 1 / rowL[i]
                                for c in c0 ..< stop { rowX[c] *= inverse }
                            }
                            if i < c1 { rowX[i] = 1 / rowL[i] }
                        }
                        b += workers
                    }
                }
            }
        }
        return x
    }

    /// `w[r, to...] -= Σ_k e[r, k] · u[from + k, to...]` for the rows `rows`
    /// of `w` (rowsTotal × cols), `e` (rowsTotal × width), `u` (cols × cols):
    /// GPTQ's lazy batch update, tiled over rows so each row of `u` is reused.
    static func subtractProduct(
        w: UnsafeMutablePointer<Double>, cols: Int, rows: Range<Int>,
        e: UnsafePointer<Double>, width: Int, u: UnsafePointer<Double>, from: Int, to: Int
    ) {
        let tile = 8
        let length = cols - to
        guard length > 0 else { return }
        var r0 = rows.lowerBound
        while r0 < rows.upperBound {
            let r1 = Swift.min(rows.upperBound, r0 + tile)
            for k in 0 ..< width {
                let uRow = u + (from + k) * cols + to
                for r in r0 ..< r1 {
                    let coefficient = e[r * width + k]
                    if coefficient != 0 { axpy(coefficient, uRow, w + r * cols + to, length) }
                }
            }
            r0 = r1
        }
    }
}
