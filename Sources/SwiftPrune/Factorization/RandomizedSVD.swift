import SwiftPruneShuffle

/// Randomized truncated SVD of a big matrix `X` by two methods:
///
/// - ``Method/krylov`` (the default): randomized block Krylov iteration,
///   see `BlockKrylovSVD.swift`. With scikit-learn's number of iterations
///   it reaches a lower error than the subspace method with 30–40% of
///   scikit-learn's product work (``krylovShape(rank:oversample:iterations:)``).
/// - ``Method/subspace``: Halko, Martinsson & Tropp 2011, Algorithms 4.4 and
///   5.1, as scikit-learn's `randomized_svd`:
///   1. `l = min(rank + oversample, min(m, n))` Gaussian test vectors `Ω`;
///   2. `Q = qr(W Ω)`, then `powerIterations` times
///      `Q = qr(W · qr(Wᵀ Q))` (every product re-orthonormalized, so the
///      subspace does not collapse onto the top singular vector: by
///      one CholeskyQR pass inside the iterations, falling back to Householder QR on
///      an ill-conditioned panel, and by CholeskyQR2 (else Householder) for the final `Q`);
///   3. `B = Qᵀ W` (`l × n`), its dense SVD `B = Û Σ Vᵀ`, `U = Q Û`;
///      the leading `rank` triplets are returned.
///
/// As scikit-learn does, a wide matrix is handled through its transpose,
/// and `powerIterations == nil` chooses 7 when `rank < 0.1 · min(m, n)`,
/// else 4 (for both methods). The big products run on the Float GEMM; the
/// small SVD of `B` in Double.
public enum RandomizedSVD {
    /// How the range of the matrix is explored.
    public enum Method: Int32, Sendable {
        /// Block Krylov: every iteration's block is kept (block size and count
        /// ``krylovShape(rank:oversample:iterations:)``); falls back to
        /// ``subspace`` when the Krylov basis would not fit in `min(m, n)`.
        case krylov = 0
        /// Subspace (power) iteration with `rank + oversample` vectors, as scikit-learn.
        case subspace = 1
    }

    /// The number of power iterations scikit-learn picks for `rank` of an `m × n` matrix.
    public static func defaultPowerIterations(rank: Int, m: Int, n: Int) -> Int {
        Double(rank) < 0.1 * Double(min(m, n)) ? 7 : 4
    }

    /// Rank-`rank` approximate SVD of the row-major `m × n` matrix `w` into
    /// `u` (`m × rank`), `s` (`rank`), `vt` (`rank × n`).
    /// - Throws: ``SwiftPruneError`` for NaN/Inf, `rank` outside
    ///   `0 ... min(m, n)`, a negative `oversample` or `powerIterations`,
    ///   or buffers that do not match.
    @_specialize(where S == Float)
    @_specialize(where S == Double)
    public static func decompose<S: BinaryFloatingPoint>(
        _ w: UnsafeBufferPointer<S>, m: Int, n: Int, rank: Int,
        oversample: Int = 10, powerIterations: Int? = nil, seed: UInt64 = 0, method: Method = .krylov,
        u: UnsafeMutableBufferPointer<Float>, s: UnsafeMutableBufferPointer<Float>,
        vt: UnsafeMutableBufferPointer<Float>
    ) throws {
        guard m >= 0, n >= 0 else { throw SwiftPruneError.value("randomized_svd: negative shape (\(m), \(n))") }
        let (mn, overflow) = m.multipliedReportingOverflow(by: n)
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "randomized_svd: shape (\(m), \(n)) is too large") }
        guard rank >= 0 && rank <= min(m, n) else {
            throw SwiftPruneError.value("rank must be in [0, \(min(m, n))] for a (\(m), \(n)) matrix, got \(rank)")
        }
        guard oversample >= 0 else { throw SwiftPruneError.value("oversample must be >= 0, got \(oversample)") }
        if let p = powerIterations, p < 0 {
            throw SwiftPruneError.value("power_iters must be >= 0, got \(p)")
        }
        guard w.count == mn, u.count == m * rank, s.count == rank, vt.count == rank * n else {
            throw SwiftPruneError.value("randomized_svd: buffer sizes do not match the shape (\(m), \(n)) and rank \(rank)")
        }
        // Validate and convert to Float (same layout); a wide matrix is worked on
        // as its transpose X = aᵀ so that rows >= cols, without moving it.
        let transposed = m < n
        let rows = transposed ? n : m, cols = transposed ? m : n
        // Scaled by a power of two 2^e > max|w|: float64 weights beyond the Float
        // range stay finite, and the division is exact (Float rounding does not
        // depend on a power-of-two factor), so the scaled problem's factors are
        // the unscaled one's, exactly, barring overflow and subnormals.
        let largest = try largestMagnitude(w)
        let scale = Double(sign: .plus, exponent: largest.exponent + 1, significand: 1)
        guard rank > 0 else { return }
        let iterations = powerIterations ?? defaultPowerIterations(rank: rank, m: m, n: n)
        var krylovBlocks: (block: Int, blocks: Int)?
        if method == .krylov {
            let shape = krylovShape(rank: rank, oversample: oversample, iterations: iterations)
            let (basis, overflow) = shape.block.multipliedReportingOverflow(by: shape.blocks)
            if !overflow && basis <= cols { krylovBlocks = shape }
        }
        // For the same reason a float32 matrix of moderate magnitude (2^-20 ≤ max|w| <
        // 2^21: no product of the method comes near overflow or subnormals) is read in
        // place, unscaled, by the Krylov method (which only reads it): the same factors
        // without a scaled copy of the matrix (a pass over it and its fresh pages).
        let inPlace = krylovBlocks != nil && S.self == Float.self && abs(largest.exponent) <= 20
        let converted = inPlace ? nil : try FallibleAllocation.allocate(Float.self, count: max(1, mn))
        defer { FallibleAllocation.free(converted) }
        if let converted {
            let inverse = 1 / scale
            let convertWorkers = Threading.workerCount(for: mn, minimumPerWorker: 1 << 18)
            parallelFor(workers: convertWorkers) { worker in
                for i in partitionRange(m, parts: convertWorkers, index: worker) {
                    for j in 0 ..< n { converted[i * n + j] = Float(Double(w[i * n + j]) * inverse) }
                }
            }
        }
        let a = converted.map { UnsafePointer($0) }
            ?? UnsafeRawPointer(w.baseAddress!).assumingMemoryBound(to: Float.self)
        let factorScale = inPlace ? 1 : scale
        if let (block, blocks) = krylovBlocks {
            let leftRows = try HugePageScratch.allocate(Float.self, count: rank * rows)
            defer { FallibleAllocation.free(leftRows) }
            let rightRows = try HugePageScratch.allocate(Float.self, count: rank * cols)
            defer { FallibleAllocation.free(rightRows) }
            let scratch = try FallibleAllocation.allocate(Float.self, count: block * rows)
            defer { FallibleAllocation.free(scratch) }
            var values = try [Double](fallibleRepeating: 0, count: rank)
            if CPUFeatures.useAVX512 {
                // A transposed copy of the matrix (one more m·n floats): the 2q + 2
                // thin products then all read their matrix in place (GEMM's direct-A
                // path) instead of packing all of it for every product with aᵀ,
                // which costs as much as the product itself at these widths.
                let at = try FallibleAllocation.allocate(Float.self, count: max(1, mn))
                defer { FallibleAllocation.free(at) }
                transposeBlocked(a, rows: m, cols: n, into: at)
                let x = transposed ? UnsafePointer(at) : a, xt = transposed ? a : UnsafePointer(at)
                try values.withUnsafeMutableBufferPointer { values in
                    try krylov(rows: rows, cols: cols, rank: rank, block: block, blocks: blocks, seed: seed,
                               timesX: { basis, count, out in
                                   try gemm(transA: false, transB: true, m: rows, n: count, k: cols, alpha: 1,
                                            a: x, lda: cols, b: basis, ldb: cols, beta: 0, c: out, ldc: count) },
                               timesXt: { basis, count, out in
                                   try project(xt, transposed: false, lda: rows, p: cols, q: rows,
                                               basis: basis, l: count, into: out, scratch: scratch) },
                               leftRows: leftRows, values: values.baseAddress!, rightRows: rightRows)
                }
            } else {
                // X and Xᵀ packed once as the AVX2 GEMM's A panels (two more m·n floats):
                // every product then streams its matrix sequentially (see PackedPanels),
                // with GEMM's micro-kernel and sums, bit-identical to `gemm`.
                let packedX = try PackedPanels(a, lda: n, transposed: transposed, rows: rows, depth: cols)
                defer { packedX.free() }
                let packedXt = try PackedPanels(a, lda: n, transposed: !transposed, rows: cols, depth: rows)
                defer { packedXt.free() }
                try values.withUnsafeMutableBufferPointer { values in
                    try krylov(rows: rows, cols: cols, rank: rank, block: block, blocks: blocks, seed: seed,
                               timesX: { basis, count, out in
                                   try packedX.multiply(basis, ldb: cols, n: count, into: out, ldc: count) },
                               timesXt: { basis, count, out in
                                   try packedXt.multiply(basis, ldb: rows, n: count, into: scratch, ldc: count)
                                   transposeBlocked(scratch, rows: cols, cols: count, into: out) },
                               leftRows: leftRows, values: values.baseAddress!, rightRows: rightRows)
                }
            }
            writeFactors(leftRows: leftRows, values: values, rightRows: rightRows, scale: factorScale,
                         transposed: transposed, m: m, n: n, rank: rank, u: u, s: s, vt: vt)
            return
        }
        let l = min(rank + oversample, cols)
        // X Ω and Xᵀ Q read `a` in place: one of them as stored, the other
        // through GEMM's transposed packing (see `project`); no copy of Xᵀ.
        func timesX(_ basis: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                    scratch: UnsafeMutablePointer<Float>) throws {
            try project(a, transposed: transposed, lda: n, p: rows, q: cols, basis: basis, l: l,
                        into: out, scratch: scratch)
        }
        func timesXt(_ basis: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                     scratch: UnsafeMutablePointer<Float>) throws {
            try project(a, transposed: !transposed, lda: n, p: cols, q: rows, basis: basis, l: l,
                        into: out, scratch: scratch)
        }
        // Ωᵀ: l × cols Gaussian rows.
        let omega = try FallibleAllocation.allocate(Float.self, count: l * cols)
        defer { FallibleAllocation.free(omega) }
        var generator = GaussianGenerator(seed: seed)
        for i in 0 ..< l * cols { omega[i] = Float(generator.next()) }
        // Qᵀ (l × rows) = qr((X Ω))ᵀ, X = a (rows × cols).
        let qt = try FallibleAllocation.allocate(Float.self, count: l * rows)
        defer { FallibleAllocation.free(qt) }
        let scratch = try FallibleAllocation.allocate(Float.self, count: l * rows)
        defer { FallibleAllocation.free(scratch) }
        try timesX(omega, into: qt, scratch: scratch)
        // Power iterations only need the subspace kept well-conditioned, not an
        // exactly orthonormal basis (scikit-learn uses LU there): one CholeskyQR
        // pass (level 3; Householder when the panel is ill-conditioned). The
        // final Q, which B = QᵀX and U = QÛ rely on, by CholeskyQR2 or Householder.
        if iterations == 0 {
            try HouseholderQR.orthonormalizeRows(qt, count: l, length: rows)
        } else {
            try CholeskyQR.orthonormalizeRows(qt, count: l, length: rows, passes: 1)
        }
        for iteration in 0 ..< iterations {
            // Zᵀ = Qᵀ X (l × cols), orthonormalized; then Qᵀ = Zᵀ Xᵀ, orthonormalized.
            try timesXt(qt, into: omega, scratch: scratch)
            try CholeskyQR.orthonormalizeRows(omega, count: l, length: cols, passes: 1)
            try timesX(omega, into: qt, scratch: scratch)
            if iteration == iterations - 1 {
                // CholeskyQR2: orthonormal to Float precision when it accepts the
                // panel (its second pass sees κ ≤ 1.5), else Householder.
                try CholeskyQR.orthonormalizeRows(qt, count: l, length: rows, passes: 2)
            } else {
                try CholeskyQR.orthonormalizeRows(qt, count: l, length: rows, passes: 1)
            }
        }
        // B = Qᵀ X (l × cols), reusing omega's storage.
        try timesXt(qt, into: omega, scratch: scratch)
        let b = try FallibleAllocation.allocate(Double.self, count: l * cols)
        defer { FallibleAllocation.free(b) }
        for i in 0 ..< l * cols { b[i] = Double(omega[i]) }
        // B is wide (l <= cols): its factors come back as rows, `right` = left singular vectors (l × l).
        let small = try SingularValueDecomposition.denseSVD(b, m: l, n: cols)
        defer { small.deallocate() }
        // small.transposed == (l < cols); its u-rows are `right` when transposed, else `left`.
        let smallU = small.transposed ? small.right : small.left  // l × l, row j = column j of Û
        let smallVt = small.transposed ? small.left : small.right // l × cols, row j = row j of Vᵀ
        // Rows of (Q Û)ᵀ = Ûᵀ Qᵀ: row j = Σ_i Û[i, j] qt_i, for the leading `rank` columns.
        let ut = try FallibleAllocation.allocate(Float.self, count: rank * l)
        defer { FallibleAllocation.free(ut) }
        for j in 0 ..< rank { for i in 0 ..< l { ut[j * l + i] = Float(smallU[j * l + i]) } }
        let leftRows = try FallibleAllocation.allocate(Float.self, count: rank * rows)
        defer { FallibleAllocation.free(leftRows) }
        try gemm(transA: false, transB: false, m: rank, n: rows, k: l, alpha: 1, a: ut, lda: l,
                 b: qt, ldb: rows, beta: 0, c: leftRows, ldc: rows)
        let rightRows = smallVt
        writeFactors(leftRows: leftRows, values: Array(small.values.prefix(rank)), rightRows: rightRows,
                     scale: scale, transposed: transposed, m: m, n: n, rank: rank, u: u, s: s, vt: vt)
    }

    /// Writes `X = a = U Σ Vᵀ` (or `aᵀ` when `transposed`) from the rows of
    /// Uᵀ (`rank × rows`) and Vᵀ (`rank × cols`, Double or Float), undoing the division of the matrix by `scale`.
    static func writeFactors<R: BinaryFloatingPoint>(
                             leftRows: UnsafePointer<Float>, values: [Double], rightRows: UnsafePointer<R>,
                             scale: Double, transposed: Bool, m: Int, n: Int, rank: Int,
                             u: UnsafeMutableBufferPointer<Float>, s: UnsafeMutableBufferPointer<Float>,
                             vt: UnsafeMutableBufferPointer<Float>) {
        let cols = transposed ? m : n
        for j in 0 ..< rank { s[j] = Float(values[j] * scale) }
        // U is the transpose of leftRows (or, transposed, of Float rightRows):
        // in registers, 8 × 8 blocks at a time (an element-wise copy scatters
        // one store per element down a column of U). Both exact copies.
        if !transposed {
            transposeBlocked(leftRows, rows: rank, cols: m, into: u.baseAddress!)
            for j in 0 ..< rank {
                for i in 0 ..< n { vt[j * n + i] = Float(rightRows[j * cols + i]) }
            }
            return
        }
        // w = V Σ Uᵀ: u's column j is Vᵀ row j (length m = cols); vt's row j is leftRows j (length n = rows).
        (vt.baseAddress!).update(from: leftRows, count: rank * n)
        if R.self == Float.self {
            let floatRows = UnsafeRawPointer(rightRows).assumingMemoryBound(to: Float.self)
            transposeBlocked(floatRows, rows: rank, cols: m, into: u.baseAddress!)
            return
        }
        for j in 0 ..< rank {
            for i in 0 ..< m { u[i * rank + j] = Float(rightRows[j * cols + i]) }
        }
    }

    /// `out` (`l × p`) = `basis` (`l × q`) · `op(matrix)`ᵀ, `op(matrix)` being
    /// `p × q` (`matrix` itself, or its transpose when `transposed`; `lda` its
    /// stored row length), computed as `op(matrix) · basisᵀ` into `scratch`
    /// (`p × l`) and transposed: GEMM then reads the big matrix in place
    /// (`GEMMDriver.directA` when `l ≤ 128`) or packs it once per block of
    /// rows that serves every column of the thin result, and packs only the
    /// thin basis as B — where `basis · op(matrix)ᵀ` would copy the whole big
    /// matrix into B panels on every product.
    static func project(_ matrix: UnsafePointer<Float>, transposed: Bool, lda: Int, p: Int, q: Int,
                        basis: UnsafePointer<Float>, l: Int,
                        into out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) throws {
        try gemm(transA: transposed, transB: true, m: p, n: l, k: q, alpha: 1, a: matrix, lda: lda,
                 b: basis, ldb: q, beta: 0, c: scratch, ldc: l)
        transposeBlocked(scratch, rows: p, cols: l, into: out)
    }

    /// `dst` (`cols × rows`) = `src` (`rows × cols`)ᵀ, in 32 × 32 tiles of
    /// 8 × 8 blocks transposed in registers (`swiftprune_transpose_8x8_f32`:
    /// eight row loads and eight row stores per block, where an element-wise
    /// copy makes 64 scattered stores; 3–4x faster on a 2048² matrix), the
    /// ragged edges element by element. An exact copy.
    ///
    /// `srcStride` / `dstStride` (defaults `cols` / `rows`): the distance between stored rows.
    static func transposeBlocked(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>,
                                 srcStride: Int? = nil, dstStride: Int? = nil) {
        let sld = srcStride ?? cols, dld = dstStride ?? rows
        let tile = 32
        let tiles = (rows + tile - 1) / tile
        let workers = Threading.workerCount(for: rows * cols, minimumPerWorker: 1 << 18)
        parallelFor(workers: workers) { worker in
            for t in partitionRange(tiles, parts: workers, index: worker) {
                let i0 = t * tile, i1 = min(i0 + tile, rows)
                var j0 = 0
                while j0 < cols {
                    let j1 = min(j0 + tile, cols)
                    var i = i0
                    #if arch(x86_64)
                    while i + 8 <= i1 {
                        var j = j0
                        while j + 8 <= j1 {
                            swiftprune_transpose_8x8_f32(src + i * sld + j, sld, dst + j * dld + i, dld)
                            j += 8
                        }
                        for r in i ..< i + 8 {
                            for c in j ..< j1 { dst[c * dld + r] = src[r * sld + c] }
                        }
                        i += 8
                    }
                    #endif
                    for r in i ..< i1 {
                        for c in j0 ..< j1 { dst[c * dld + r] = src[r * sld + c] }
                    }
                    j0 = j1
                }
            }
        }
    }

    /// Rank-`rank` approximate SVD of a 2-D tensor; see
    /// ``decompose(_:m:n:rank:oversample:powerIterations:seed:method:u:s:vt:)``.
    public static func decompose<S: BinaryFloatingPoint>(
        _ w: Tensor<S>, rank: Int, oversample: Int = 10, powerIterations: Int? = nil, seed: UInt64 = 0,
        method: Method = .krylov
    ) throws -> SVDResult {
        guard w.rank == 2 else {
            throw SwiftPruneError.value("randomized_svd needs a 2-D tensor, got shape \(w.shape)")
        }
        let m = w.shape[0], n = w.shape[1]
        guard rank >= 0 && rank <= min(m, n) else {
            throw SwiftPruneError.value("rank must be in [0, \(min(m, n))] for a (\(m), \(n)) matrix, got \(rank)")
        }
        var u = try Tensor<Float>(shape: [m, rank], repeating: 0)
        var s = try Tensor<Float>(shape: [rank], repeating: 0)
        var vt = try Tensor<Float>(shape: [rank, n], repeating: 0)
        try w.withView { view in
            try u.withMutableView { u in
                try s.withMutableView { s in
                    try vt.withMutableView { vt in
                        try decompose(view.buffer, m: m, n: n, rank: rank, oversample: oversample,
                                      powerIterations: powerIterations, seed: seed, method: method,
                                      u: u.buffer, s: s.buffer, vt: vt.buffer)
                    }
                }
            }
        }
        return SVDResult(u: u, s: s, vt: vt)
    }
}
