/// CholeskyQR2 of a thin matrix stored by columns (as ``HouseholderQR``):
/// `G = Yᵀ Y` by ``syrk(transA:n:k:alpha:a:lda:c:ldc:)``, `G = Rᵀ R` by a
/// Cholesky factorization in Double, `Q = Y R⁻¹` by one GEMM with the
/// explicit `R⁻¹` — done twice, the second pass removing the loss of
/// orthogonality (`~ κ(Y)² ε`) of the first. All the work is level 3,
/// where Householder QR is level 2, so it is several times faster on the
/// tall panels of a randomized SVD.
///
/// It is only accurate for a well-conditioned `Y`: when a Cholesky pivot is
/// not positive, or the pivots say `κ(Y)` exceeds ``maximumCondition``, the
/// panel is handed to ``HouseholderQR/orthonormalizeRows(_:count:length:)``
/// instead (which also handles exact rank deficiency).
public enum CholeskyQR {
    /// The largest estimated `κ(Y)` (ratio of the largest to the smallest
    /// Cholesky pivot) a pass accepts. Float Gram matrices lose `κ² · 6e-8`
    /// relative accuracy, so `κ ≤ 1e2` keeps the first pass's `Q` within
    /// ~1e-3 of orthonormal, which the second pass (which accepts only
    /// `κ ≤ 1.5`) makes orthonormal to Float precision.
    public static let maximumCondition: Double = 100

    /// Replaces the rows of `rows` (`count × length`, the columns of `Y`) by
    /// orthonormal rows spanning the same leading subspaces (`Y = QR`, `R`
    /// upper triangular with a positive diagonal).
    ///
    /// `passes: 1` (plain CholeskyQR) leaves rows orthonormal only to about
    /// `κ(Y)² · 6e-8 ≤ 1e-3` but spanning the same subspace, at half the
    /// cost: enough to renormalize the power iterations of a randomized SVD.
    /// - Returns: `true` if CholeskyQR was used, `false` if it fell back to Householder QR.
    /// - Throws: ``SwiftPruneError`` if `count > length`, sizes are negative
    ///   or `passes` is not 1 or 2.
    @discardableResult
    public static func orthonormalizeRows(_ rows: UnsafeMutablePointer<Float>, count: Int, length: Int,
                                          passes: Int = 2) throws -> Bool {
        guard passes == 1 || passes == 2 else {
            throw SwiftPruneError.value("cholesky QR passes must be 1 or 2, got \(passes)")
        }
        guard count >= 0, length >= 0, count <= length else {
            throw SwiftPruneError.value("cholesky QR needs 0 <= count <= length, got \(count) and \(length)")
        }
        guard count > 0 else { return true }
        let (total, overflow) = count.multipliedReportingOverflow(by: length)
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "cholesky QR: size overflows") }
        let accepted = try ScratchPool.withFallible(Float.self, count: total) { copy -> Bool in
            copy.update(from: rows, count: total)
            // The second pass must find Q₁ nearly orthonormal already, or Q₂ would not be.
            for limit in [maximumCondition, 1.5].prefix(passes) {
                guard try pass(rows, count: count, length: length, limit: limit) else {
                    rows.update(from: copy, count: total)
                    return false
                }
            }
            return true
        }
        if !accepted { try HouseholderQR.orthonormalizeRows(rows, count: count, length: length) }
        return accepted
    }

    /// One CholeskyQR pass in place; `false` (rows untouched) when the Gram matrix is too ill-conditioned.
    static func pass(_ rows: UnsafeMutablePointer<Float>, count l: Int, length: Int, limit: Double) throws -> Bool {
        let gram = try FallibleAllocation.allocate(Float.self, count: l * l, "cholesky QR's Gram matrix")
        defer { FallibleAllocation.free(gram) }
        try syrk(transA: false, n: l, k: length, alpha: 1, a: rows, lda: length, c: gram, ldc: l)
        let inverse = try FallibleAllocation.allocate(Float.self, count: l * l, "cholesky QR's inverse factor")
        defer { FallibleAllocation.free(inverse) }
        guard try inverseFactor(gram: gram, ld: l, count: l, limit: limit, into: inverse) else { return false }
        // Qᵀ = L⁻¹ Yᵀ: rows ← inverse · rows.
        try ScratchPool.withFallible(Float.self, count: l * length) { out in
            try lowerTriangularProduct(inverse, count: l, rows, length: length, into: out)
            rows.update(from: out, count: l * length)
        }
        return true
    }

    /// Rows of a lower-triangular product (`triangleRowBlock` of them per GEMM):
    /// block `I` of `L · Y` only needs the first `(I + 1) · 64` rows of `Y`.
    static let triangleRowBlock = 64

    /// `out` (`count × length`) = `lower` (`count × count`, lower triangular,
    /// zeros above the diagonal) · `rows` (`count × length`), by GEMMs on
    /// blocks of ``triangleRowBlock`` rows that stop at the diagonal block
    /// (5/8 of a full product's work at `count = 256`). Each element's sum is
    /// the full product's, less trailing `0 · y` terms (the same depth blocks
    /// in the same order): the same values.
    static func lowerTriangularProduct(_ lower: UnsafePointer<Float>, count l: Int, _ rows: UnsafePointer<Float>,
                                       length: Int, into out: UnsafeMutablePointer<Float>) throws {
        var first = 0
        while first < l {
            let height = min(triangleRowBlock, l - first)
            try gemm(transA: false, transB: false, m: height, n: length, k: first + height, alpha: 1,
                     a: lower + first * l, lda: l, b: rows, ldb: length, beta: 0, c: out + first * length, ldc: length)
            first += height
        }
    }

    /// `L⁻¹` (`count × count`, lower triangular, row-major, into `inverse`) of
    /// the Cholesky factor `G = L Lᵀ` of the Gram matrix `gram` (its lower
    /// triangle read, rows `ld` apart), factored in Double. `false` when a
    /// pivot is not positive or the pivots' ratio (an estimate of `κ(Y)` for
    /// `G = Y Yᵀ`) exceeds `limit`. `L⁻¹ Y` has orthonormal rows to about `κ² · 6e-8`.
    /// - Throws: `.outOfMemory` if the factor's scratch cannot be allocated.
    static func inverseFactor(gram: UnsafePointer<Float>, ld: Int, count l: Int, limit: Double,
                              into inverse: UnsafeMutablePointer<Float>) throws -> Bool {
        // Lower Cholesky factor L (= Rᵀ) in Double, row-major.
        let factor = try FallibleAllocation.allocate(Double.self, count: l * l, "cholesky QR's factor")
        defer { FallibleAllocation.free(factor) }
        factor.update(repeating: 0, count: l * l)
        var largest = 0.0, smallest = Double.infinity
        for j in 0 ..< l {
            let rj = factor + j * l
            var d = Double(gram[j * ld + j])
            d -= dot(rj, rj, j)
            guard d > 0, d.isFinite else { return false }
            let pivot = d.squareRoot()
            rj[j] = pivot
            largest = max(largest, pivot)
            smallest = min(smallest, pivot)
            for i in j + 1 ..< l {
                let ri = factor + i * l
                var s = Double(gram[i * ld + j])
                s -= dot(ri, rj, j)
                ri[j] = s / pivot
            }
        }
        guard largest <= limit * smallest else { return false }
        // L⁻¹ (lower triangular) by forward substitution, column by column, into Float.
        inverse.update(repeating: 0, count: l * l)
        let column = try FallibleAllocation.allocate(Double.self, count: l, "cholesky QR's inverse column")
        defer { FallibleAllocation.free(column) }
        for c in 0 ..< l {
            for i in c ..< l {
                var s = i == c ? 1.0 : 0.0
                let ri = factor + i * l
                s -= dot(ri + c, column + c, i - c)
                column[i] = s / ri[i]
                inverse[i * l + c] = Float(column[i])
            }
        }
        return true
    }
}
