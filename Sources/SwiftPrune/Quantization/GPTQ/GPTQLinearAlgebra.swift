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

    /// `C[i][j] += sign · Σ_k a(i, k) · B[k][j]` for `i < m`, `j < n`, `k < depth`,
    /// where `a(i, k) = a[i · aRowStride + k · aDepthStride]`, `B[k][j] =
    /// b[k · bStride + j]`, `C[i][j] = c[i · cStride + j]`: a register-tiled
    /// (4 × 8) multiply-accumulate, the one GEMM-shaped loop of GPTQ.
    static func multiplyAccumulate(
        m: Int, n: Int, depth: Int, sign: Double,
        a: UnsafePointer<Double>, aRowStride: Int, aDepthStride: Int,
        b: UnsafePointer<Double>, bStride: Int, c: UnsafeMutablePointer<Double>, cStride: Int
    ) {
        var i = 0
        while i < m {
            let rows = Swift.min(4, m - i)
            var j = 0
            while j + 8 <= n && rows == 4 {
                var c00 = SIMD4<Double>(repeating: 0), c01 = c00, c10 = c00, c11 = c00
                var c20 = c00, c21 = c00, c30 = c00, c31 = c00
                let a0 = a + i * aRowStride, a1 = a0 + aRowStride, a2 = a1 + aRowStride, a3 = a2 + aRowStride
                for k in 0 ..< depth {
                    let bk = b + k * bStride + j
                    let b0 = load4(bk), b1 = load4(bk + 4)
                    let o = k * aDepthStride
                    let x0 = SIMD4<Double>(repeating: a0[o]), x1 = SIMD4<Double>(repeating: a1[o])
                    let x2 = SIMD4<Double>(repeating: a2[o]), x3 = SIMD4<Double>(repeating: a3[o])
                    c00.addProduct(x0, b0); c01.addProduct(x0, b1)
                    c10.addProduct(x1, b0); c11.addProduct(x1, b1)
                    c20.addProduct(x2, b0); c21.addProduct(x2, b1)
                    c30.addProduct(x3, b0); c31.addProduct(x3, b1)
                }
                let s = SIMD4<Double>(repeating: sign)
                func add(_ row: Int, _ lo: SIMD4<Double>, _ hi: SIMD4<Double>) {
                    let p = c + (i + row) * cStride + j
                    let raw = UnsafeMutableRawPointer(p)
                    raw.storeBytes(of: load4(p).addingProduct(s, lo), as: SIMD4<Double>.self)
                    (raw + 32).storeBytes(of: load4(p + 4).addingProduct(s, hi), as: SIMD4<Double>.self)
                }
                add(0, c00, c01); add(1, c10, c11); add(2, c20, c21); add(3, c30, c31)
                j += 8
            }
            // Edges: plain dot products.
            for r in 0 ..< rows {
                let ar = a + (i + r) * aRowStride
                for jj in j ..< n {
                    var total = 0.0
                    for k in 0 ..< depth { total += ar[k * aDepthStride] * b[k * bStride + jj] }
                    c[(i + r) * cStride + jj] += sign * total
                }
            }
            i += rows
        }
    }

    /// `XᵀX / samples` (features × features) of `x` (samples × features):
    /// lower block rows by ``multiplyAccumulate``, then mirrored.
    public static func gram(_ x: UnsafeBufferPointer<Double>, samples: Int, features: Int) -> [Double] {
        let n = features
        var h = [Double](repeating: 0, count: n * n)
        guard n > 0 && samples > 0 else { return h }
        let xBase = x.baseAddress!
        let blocks = (n + 3) / 4
        let workers = Swift.min(blocks, Threading.workerCount(for: n * n * samples / 2, minimumPerWorker: 1 << 20))
        h.withUnsafeMutableBufferPointer { hb in
            let hBase = hb.baseAddress!
            parallelFor(workers: workers) { worker in
                var block = worker
                while block < blocks {
                    let i0 = block * 4, rows = Swift.min(4, n - i0)
                    // Rows i0..<i0+rows, columns 0..<i0+rows (the lower part, rounded up to the block).
                    multiplyAccumulate(m: rows, n: i0 + rows, depth: samples, sign: 1,
                                       a: xBase + i0, aRowStride: 1, aDepthStride: n,
                                       b: xBase, bStride: n, c: hBase + i0 * n, cStride: n)
                    block += workers
                }
            }
            let scale = 1 / Double(samples)
            for i in 0 ..< n {
                for j in 0 ... i {
                    let v = hBase[i * n + j] * scale
                    hBase[i * n + j] = v
                    hBase[j * n + i] = v
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
    /// GPTQ's lazy batch update, by ``multiplyAccumulate``.
    static func subtractProduct(
        w: UnsafeMutablePointer<Double>, cols: Int, rows: Range<Int>,
        e: UnsafePointer<Double>, width: Int, u: UnsafePointer<Double>, from: Int, to: Int
    ) {
        guard cols > to, !rows.isEmpty else { return }
        multiplyAccumulate(m: rows.count, n: cols - to, depth: width, sign: -1,
                           a: e + rows.lowerBound * width, aRowStride: width, aDepthStride: 1,
                           b: u + from * cols + to, bStride: cols, c: w + rows.lowerBound * cols + to, cStride: cols)
    }
}
