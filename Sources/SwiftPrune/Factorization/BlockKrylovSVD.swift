/// Randomized block Krylov SVD (Musco & Musco 2015, "Randomized Block Krylov
/// Methods for Stronger and Faster Approximate Singular Value Decomposition"),
/// the default method of ``RandomizedSVD``.
///
/// Subspace (power) iteration keeps only its last block `(XXᵀ)^q X Ω`; the
/// Krylov method keeps every block `[XΩ, (XXᵀ)XΩ, …, (XXᵀ)^q XΩ]` and takes
/// the best rank-`rank` approximation within their span (Rayleigh–Ritz). Its
/// error shrinks like `exp(-q·√gap)` instead of `exp(-q·gap)`, so a block of
/// half the rank reaches the subspace method's error with the same number of
/// iterations: about half the product work.
///
/// The basis is built block-Lanczos style with full reorthogonalization: every
/// new block `Y_{i+1} = X · orth(Xᵀ Y_i)` is projected off the previous
/// blocks twice (classical Gram–Schmidt, normalized in between, so a block
/// that has converged into the span does not lose orthogonality). With an
/// orthonormal basis `K`, the products `Z_i = Xᵀ Y_i` that drive the
/// iteration are also the rows of `B = Kᵀ X`: no extra pass over `X` for
/// the Rayleigh–Ritz step beyond the last block's. `B`'s SVD comes from the
/// eigendecomposition of its `Double` Gram matrix `B Bᵀ` (only the leading
/// `rank` right vectors are formed).
extension RandomizedSVD {
    /// The Krylov block size for `rank`, `oversample` and `iterations`:
    /// half the rank, but at least enough for `(iterations + 1)` blocks to
    /// hold `rank + oversample` vectors (so `iterations == 0` is the plain
    /// range finder with `rank + oversample` test vectors).
    public static func krylovBlockSize(rank: Int, oversample: Int, iterations: Int) -> Int {
        let half = (rank + 1) / 2
        let (total, overflow) = rank.addingReportingOverflow(oversample)
        let spread = overflow ? Int.max / 2 : (total + iterations) / (iterations + 1)
        return max(1, max(half, spread))
    }

    /// Block Krylov rank-`rank` SVD of `x` (`rows × cols`, rows ≥ cols), read
    /// through `timesX` / `timesXt`. Fills `leftRows` (`rank × rows`, rows of
    /// Uᵀ), `values` (`rank`) and `rightRows` (`rank × cols`, rows of Vᵀ).
    /// The caller guarantees `(iterations + 1) · block ≤ cols`.
    static func krylov(
        rows: Int, cols: Int, rank: Int, block b: Int, iterations q: Int, seed: UInt64,
        timesX: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) throws -> Void,
        timesXt: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) throws -> Void,
        leftRows: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Double>,
        rightRows: UnsafeMutablePointer<Double>
    ) throws {
        let blocks = q + 1, capacity = blocks * b
        // K (capacity × rows): the orthonormal basis rows; Z (capacity × cols): rows of B = Kᵀ X.
        let kt = try FallibleAllocation.allocate(Float.self, count: capacity * rows)
        defer { FallibleAllocation.free(kt) }
        let zt = try FallibleAllocation.allocate(Float.self, count: capacity * cols)
        defer { FallibleAllocation.free(zt) }
        let work = try FallibleAllocation.allocate(Float.self, count: b * max(rows, cols))
        defer { FallibleAllocation.free(work) }
        let coefficients = try FallibleAllocation.allocate(Float.self, count: b * capacity)
        defer { FallibleAllocation.free(coefficients) }
        // Ωᵀ: b × cols Gaussian rows; Y₀ = orth(X Ω).
        var generator = GaussianGenerator(seed: seed)
        for i in 0 ..< b * cols { work[i] = Float(generator.next()) }
        try timesX(work, b, kt)
        try CholeskyQR.orthonormalizeRows(kt, count: b, length: rows, passes: 2)
        var blocksUsed = blocks
        iterate: for i in 0 ..< blocks {
            let y = kt + i * b * rows, z = zt + i * b * cols
            try timesXt(y, b, z)
            guard i < q else { break }
            // Y_{i+1} = X · orth(Z_i): the renormalized block spans the same space
            // (XXᵀ Y_i) without its condition number growing with each iteration.
            work.update(from: z, count: b * cols)
            try CholeskyQR.orthonormalizeRows(work, count: b, length: cols, passes: 1)
            let next = y + b * rows
            try timesX(work, b, next)
            let done = (i + 1) * b
            var before = 0.0
            for r in 0 ..< b * rows { before += Double(next[r]) * Double(next[r]) }
            for round in 0 ..< 2 {
                // next -= Cᵀ K over the finished blocks, C = K nextᵀ (done × b), then
                // orthonormalized. C is computed with K as GEMM's A, read in place by the
                // direct-A kernel when b ≤ 128 (as `next Kᵀ` it was packed as B: a
                // transposing gather of all of K, twice per block).
                try gemm(transA: false, transB: true, m: done, n: b, k: rows, alpha: 1, a: kt, lda: rows,
                         b: next, ldb: rows, beta: 0, c: coefficients, ldc: b)
                try gemm(transA: true, transB: false, m: b, n: rows, k: done, alpha: -1, a: coefficients, lda: b,
                         b: kt, ldb: rows, beta: 1, c: next, ldc: rows)
                if round == 0 {
                    // The whole block already lies in the span (to Float rounding): the
                    // Krylov space is invariant (an exactly low-rank matrix), and blocks
                    // of pure rounding noise would only be made orthogonal by luck.
                    var after = 0.0
                    for r in 0 ..< b * rows { after += Double(next[r]) * Double(next[r]) }
                    if done >= rank && !(after > 1e-8 * before) { blocksUsed = i + 1; break iterate }
                }
                // Round 1 starts from an orthonormal block Q (CholeskyQR2 of round 0) and
                // makes it Q − K C with C = K Qᵀ: its Gram matrix is I − CᵀC, so when
                // ‖C‖²_F ≤ 1e-6 (the usual case: round 0 left only rounding in the span
                // of K) κ ≤ 1 + 1e-6 and one CholeskyQR pass is already orthonormal to
                // Float precision; otherwise CholeskyQR2 as in round 0.
                var passes = 2
                if round == 1 {
                    var moved = 0.0
                    for r in 0 ..< done * b { moved += Double(coefficients[r]) * Double(coefficients[r]) }
                    if moved <= 1e-6 { passes = 1 }
                }
                try CholeskyQR.orthonormalizeRows(next, count: b, length: rows, passes: passes)
            }
        }
        // Rayleigh–Ritz: B = Kᵀ X = Z (d × cols); G = B Bᵀ = E Λ Eᵀ in Double.
        let d = blocksUsed * b
        let bd = try FallibleAllocation.allocate(Double.self, count: d * cols)
        defer { FallibleAllocation.free(bd) }
        for i in 0 ..< d * cols { bd[i] = Double(zt[i]) }
        let gram = try FallibleAllocation.allocate(Double.self, count: d * d)
        defer { FallibleAllocation.free(gram) }
        try syrk(transA: false, n: d, k: cols, alpha: 1, a: bd, lda: cols, c: gram, ldc: d)
        _ = try SymmetricEigen.decompose(gram, n: d)
        // Eigenvectors come as rows, ascending: the leading `rank`, descending.
        let top = try FallibleAllocation.allocate(Double.self, count: rank * d)
        defer { FallibleAllocation.free(top) }
        for j in 0 ..< rank { (top + j * d).update(from: gram + (d - 1 - j) * d, count: d) }
        // Vᵀ rows: e_j B / ‖e_j B‖ (the norm is σ_j); Uᵀ rows: e_j K.
        try gemm(transA: false, transB: false, m: rank, n: cols, k: d, alpha: 1, a: top, lda: d,
                 b: bd, ldb: cols, beta: 0, c: rightRows, ldc: cols)
        var norms = try [Double](fallibleRepeating: 0, count: rank)
        for j in 0 ..< rank {
            norms[j] = dot(rightRows + j * cols, rightRows + j * cols, cols).squareRoot()
        }
        try SingularValueDecomposition.orthonormalizeRows(rightRows, count: rank, length: cols, norms: norms)
        // Descending by the computed σ (rounding may swap near-equal eigenvalues).
        let order = (0 ..< rank).sorted { norms[$0] > norms[$1] || (norms[$0] == norms[$1] && $0 < $1) }
        if order != Array(0 ..< rank) {
            SingularValueDecomposition.permuteRows(rightRows, order, length: cols)
            SingularValueDecomposition.permuteRows(top, order, length: d)
            norms = order.map { norms[$0] }
        }
        for j in 0 ..< rank { values[j] = norms[j] }
        let topFloat = try FallibleAllocation.allocate(Float.self, count: rank * d)
        defer { FallibleAllocation.free(topFloat) }
        for i in 0 ..< rank * d { topFloat[i] = Float(top[i]) }
        try gemm(transA: false, transB: false, m: rank, n: rows, k: d, alpha: 1, a: topFloat, lda: d,
                 b: kt, ldb: rows, beta: 0, c: leftRows, ldc: rows)
    }
}
