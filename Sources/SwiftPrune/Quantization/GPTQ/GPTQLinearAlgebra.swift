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
        // Cache blocking: chunks of samples (depth) and of columns, so that the
        // panel of x being reused stays in cache.
        let depthChunk = 256, columnChunk = 512
        h.withUnsafeMutableBufferPointer { hb in
            let hBase = hb.baseAddress!
            var k0 = 0
            while k0 < samples {
                let depth = Swift.min(depthChunk, samples - k0)
                var j0 = 0
                while j0 < n {
                    let width = Swift.min(columnChunk, n - j0)
                    let firstBlock = j0 / 4
                    parallelFor(workers: workers) { worker in
                        var block = firstBlock + worker
                        while block < blocks {
                            let i0 = block * 4, rows = Swift.min(4, n - i0)
                            let columns = Swift.min(j0 + width, i0 + rows) - j0
                            if columns > 0 {
                                multiplyAccumulate(m: rows, n: columns, depth: depth, sign: 1,
                                                   a: xBase + k0 * n + i0, aRowStride: 1, aDepthStride: n,
                                                   b: xBase + k0 * n + j0, bStride: n, c: hBase + i0 * n + j0, cStride: n)
                            }
                            block += workers
                        }
                    }
                    j0 += width
                }
                k0 += depth
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

    static let panel = 256
    /// Column panels of the triangular inverse's products (wide enough for the GEMM to run at speed).
    static let triangularPanel = 256

    /// The lower Cholesky factor of the symmetric matrix `a` (n × n), in place
    /// (the upper triangle is zeroed); see ``choleskyLower(_:n:)``.
    /// - Throws: ``SwiftPruneError`` if `a` is not positive definite.
    public static func cholesky(_ a: inout [Double], n: Int) throws {
        guard n > 0 else { return }
        guard a.count >= n * n else { throw SwiftPruneError.value("cholesky: the matrix has \(a.count) entries, expected \(n) x \(n)") }
        try a.withUnsafeMutableBufferPointer { try choleskyLower($0.baseAddress!, n: n) }
    }

    /// The inverse of the lower-triangular `l` (n × n, nonzero diagonal),
    /// lower triangular; see ``invertLower(_:n:into:)``.
    public static func invertLower(_ l: [Double], n: Int) throws -> [Double] {
        var x = try [Double](fallibleRepeating: 0, count: n * n, "the triangular inverse")
        guard n > 0 else { return x }
        guard l.count >= n * n else { throw SwiftPruneError.value("invertLower: the matrix has \(l.count) entries, expected \(n) x \(n)") }
        try l.withUnsafeBufferPointer { lb in
            try x.withUnsafeMutableBufferPointer { try invertLower(lb.baseAddress!, n: n, into: $0.baseAddress!) }
        }
        return x
    }

    /// Σ a[i] b[i] for i < n, eight lanes at a time.
    @inline(__always)
    static func dotProduct<T: GEMMScalar & SIMDScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
        var s0 = SIMD8<T>(repeating: 0), s1 = SIMD8<T>(repeating: 0)
        var i = 0
        while i + 16 <= n {
            s0 = s0.addingProduct(loadVector(a + i), loadVector(b + i) as SIMD8<T>)
            s1 = s1.addingProduct(loadVector(a + i + 8), loadVector(b + i + 8) as SIMD8<T>)
            i += 16
        }
        if i + 8 <= n { s0 = s0.addingProduct(loadVector(a + i), loadVector(b + i) as SIMD8<T>); i += 8 }
        var total = (s0 + s1).sum()
        while i < n { total += a[i] * b[i]; i += 1 }
        return total
    }

    /// y[i] += alpha · x[i] for i < n, eight lanes at a time.
    @inline(__always)
    static func addScaled<T: GEMMScalar & SIMDScalar>(_ alpha: T, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        let a = SIMD8<T>(repeating: alpha)
        var i = 0
        while i + 8 <= n {
            storeVector((loadVector(UnsafePointer(y + i)) as SIMD8<T>).addingProduct(a, loadVector(x + i)), y + i)
            i += 8
        }
        while i < n { y[i] += alpha * x[i]; i += 1 }
    }

    /// The lower Cholesky factor of the symmetric `n × n` row-major matrix at
    /// `base` (only its lower triangle is read), in place; the upper triangle
    /// is zeroed. Blocked, left-looking: each panel of 256 columns is first
    /// updated with one packed GEMM, its diagonal block is factored column by
    /// column, and the rows below it are solved by a second GEMM with the
    /// inverse of that block (`L[below, P] = A[below, P] · L[P, P]⁻ᵀ`; a
    /// row-by-row triangular solve ran at dot-product speed, ~a third of the
    /// factorization's time). Float runs as fast as the paper's float32 factorization;
    /// Double is the fallback for Hessians float cannot factor.
    /// - Throws: ``SwiftPruneError`` if the matrix is not positive definite
    ///   (a pivot ≤ 0 or not finite).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func choleskyLower<T: GEMMScalar & SIMDScalar>(_ base: UnsafeMutablePointer<T>, n: Int) throws {
        guard n > 0 else { return }
        // Scratch: the inverse of a diagonal block (panel × panel), then the rows below it (rest × panel).
        let widest = Swift.min(panel, n)
        let blockInverse = try FallibleAllocation.allocate(T.self, count: 2 * widest * widest, "the Cholesky block inverse")
        defer { FallibleAllocation.free(blockInverse) }
        let below = try FallibleAllocation.allocate(T.self, count: Swift.max(n - widest, 1) * widest, "the Cholesky panel")
        defer { FallibleAllocation.free(below) }
        var failedAt = -1
        var j0 = 0
        while j0 < n && failedAt < 0 {
            let width = Swift.min(panel, n - j0)
            // Panel update: A[j0..., j0..<j0+w] -= L[j0..., 0..<j0] · L[j0..<j0+w, 0..<j0]ᵀ (disjoint columns).
            if j0 > 0 {
                try gemm(transA: false, transB: true, m: n - j0, n: width, k: j0, alpha: -1,
                         a: base + j0 * n, lda: n, b: base + j0 * n, ldb: n,
                         beta: 1, c: base + j0 * n + j0, ldc: n)
            }
            // The panel's diagonal block.
            for j in j0 ..< j0 + width {
                let rowJ = base + j * n
                let d = rowJ[j] - dotProduct(rowJ + j0, rowJ + j0, j - j0)
                guard d > 0 && d.isFinite else { failedAt = j; break }
                let pivot = d.squareRoot()
                rowJ[j] = pivot
                for i in (j + 1) ..< (j0 + width) {
                    let rowI = base + i * n
                    rowI[j] = (rowI[j] - dotProduct(rowI + j0, rowJ + j0, j - j0)) / pivot
                }
            }
            guard failedAt < 0 else { break }
            // The rows below it: L[below, P] = A[below, P] · L[P, P]⁻ᵀ, one GEMM (a copy of A[below, P] in,
            // L[below, P] out) with the inverse of the diagonal block (compact, width × width).
            let rest = n - j0 - width
            if rest > 0 {
                let diagonal = blockInverse + width * width
                for r in 0 ..< width {
                    (diagonal + r * width).update(from: base + (j0 + r) * n + j0, count: width)
                }
                try invertLower(UnsafePointer(diagonal), n: width, into: blockInverse)
                let workers = Threading.workerCount(for: rest * width, minimumPerWorker: 1 << 16)
                parallelFor(workers: workers) { worker in
                    for r in partitionRange(rest, parts: workers, index: worker) {
                        (below + r * width).update(from: base + (j0 + width + r) * n + j0, count: width)
                    }
                }
                try gemm(transA: false, transB: true, m: rest, n: width, k: width, alpha: 1,
                         a: UnsafePointer(below), lda: width, b: UnsafePointer(blockInverse), ldb: width,
                         beta: 0, c: base + (j0 + width) * n + j0, ldc: n)
            }
            j0 += width
        }
        if failedAt >= 0 {
            throw SwiftPruneError.value(
                "the Hessian XᵀX is not positive definite (pivot \(failedAt)); increase damp or add calibration samples")
        }
        for i in 0 ..< n { (base + i * n + i + 1).update(repeating: 0, count: n - i - 1) }
    }

    /// `x` = the inverse of the lower-triangular `l` (n × n, nonzero
    /// diagonal; its upper triangle is not read), lower triangular. Blocked
    /// by rows of 256: for block row I, first `X[I, I] = L[I, I]⁻¹` (row by
    /// row), then `X[I, :I] = -X[I, I] · (L[I, :I] · X[:I, :I])`, two packed
    /// GEMMs (LAPACK trtri's blocking; a forward substitution in place of
    /// the second GEMM ran at axpy speed). `x` must not overlap `l`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func invertLower<T: GEMMScalar & SIMDScalar>(_ L: UnsafePointer<T>, n: Int, into X: UnsafeMutablePointer<T>) throws {
        guard n > 0 else { return }
        // L[I, :i0] · X[:i0, :i0] of the block row (height × i0).
        let product = try FallibleAllocation.allocate(T.self, count: n > panel ? panel * (n - 1) : 1,
                                                      "the triangular inverse's block row")
        defer { FallibleAllocation.free(product) }
        var i0 = 0
        while i0 < n {
            let height = Swift.min(panel, n - i0)
            // The diagonal block: the inverse of L[I, I], row by row; the rest of each row (from i0) is zero,
            // X[I, :i0] is written (not added to) by the GEMM below.
            for r in i0 ..< i0 + height {
                let rowX = X + r * n, rowL = L + r * n
                (rowX + i0).update(repeating: 0, count: n - i0)
                for q in i0 ..< r { addScaled(-rowL[q], UnsafePointer(X + q * n + i0), rowX + i0, q - i0 + 1) }
                let inverse = 1 / rowL[r]
                for c in i0 ..< r { rowX[c] *= inverse }
                rowX[r] = inverse
            }
            if i0 > 0 {
                // T = L[I, :i0] · X[:i0, :i0], in column panels: X is lower triangular, so T[:, P] = L[I, p0:i0] ·
                // X[p0:i0, P] (half the work).
                var p0 = 0
                while p0 < i0 {
                    let width = Swift.min(triangularPanel, i0 - p0)
                    try gemm(transA: false, transB: false, m: height, n: width, k: i0 - p0, alpha: 1,
                             a: L + i0 * n + p0, lda: n, b: UnsafePointer(X + p0 * n + p0), ldb: n,
                             beta: 0, c: product + p0, ldc: i0)
                    p0 += width
                }
                // X[I, :i0] = -X[I, I] · T.
                try gemm(transA: false, transB: false, m: height, n: i0, k: height, alpha: -1,
                         a: UnsafePointer(X + i0 * n + i0), lda: n, b: UnsafePointer(product), ldb: i0,
                         beta: 0, c: X + i0 * n, ldc: n)
            }
            i0 += height
        }
    }

    /// `w[:, to...] -= e · u[from ..< from + width, to...]` for `w` (rows × cols),
    /// `e` (rows × width), `u` (cols × cols): GPTQ's lazy batch update, by the
    /// packed, multithreaded ``gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``.
    static func subtractProduct(
        w: UnsafeMutablePointer<Double>, rows: Int, cols: Int,
        e: UnsafePointer<Double>, width: Int, u: UnsafePointer<Double>, from: Int, to: Int
    ) throws {
        guard cols > to, rows > 0, width > 0 else { return }
        try gemm(transA: false, transB: false, m: rows, n: cols - to, k: width, alpha: -1,
                 a: e, lda: width, b: u + from * cols + to, ldb: cols, beta: 1, c: w + to, ldc: cols)
    }
}
