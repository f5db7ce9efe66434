#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thin singular value decomposition `w = u · diag(s) · vt` of an
/// `m × n` matrix, `r = min(m, n)`: `u` is `m × r` with orthonormal
/// columns, `s` the `r` singular values in descending order, `vt` is
/// `r × n` with orthonormal rows.
public struct SVDResult {
    public let u: Tensor<Float>
    public let s: Tensor<Float>
    public let vt: Tensor<Float>
}

/// The dense SVD of the tensor core, computed in `Double` whatever the input:
///
/// 1. the Gram matrix `G = WᵀW` of the thin side (`n × n` for a tall `W`,
///    else `WWᵀ`) with the blocked GEMM;
/// 2. its eigendecomposition (`SymmetricEigen`: blocked Householder
///    tridiagonalization, QL eigenvalues, inverse-iteration eigenvectors)
///    gives the right singular vectors `V`;
/// 3. `B = W V` has orthogonal columns of norms `s`; normalized, they are
///    made orthonormal by Cholesky QR (twice when needed), which keeps their
///    order and direction — skipped when they are already orthonormal to
///    `acceptedDeviation` (1e-8, below the float32 rounding of the result;
///    checked by Gaussian probes, then by the Gram matrix). Directions whose singular value is
///    below `1e-6 · s_max` (numerically zero for float32 results) are an
///    orthonormal completion
///    (`HouseholderQR.orthonormalComplement`), in `V` and in `U`.
///
/// Squaring the condition number in step 1 costs nothing for float32
/// results: singular values are exact to about `1e-8 · s_max` (they are
/// taken as the norms of `W v`, not from the eigenvalues), below float32
/// resolution.
public enum SingularValueDecomposition {
    /// Thin SVD of the row-major `m × n` matrix `w`, written into caller
    /// buffers: `u` (`m × r`), `s` (`r`), `vt` (`r × n`), `r = min(m, n)`.
    /// - Throws: ``SwiftPruneError`` if `w` holds NaN or Inf or the sizes
    ///   do not match the buffers.
    @_specialize(where S == Float)
    @_specialize(where S == Double)
    public static func decompose<S: BinaryFloatingPoint>(
        _ w: UnsafeBufferPointer<S>, m: Int, n: Int,
        u: UnsafeMutableBufferPointer<Float>, s: UnsafeMutableBufferPointer<Float>,
        vt: UnsafeMutableBufferPointer<Float>
    ) throws {
        let r = min(m, n)
        guard m >= 0, n >= 0 else { throw SwiftPruneError.value("svd: negative shape (\(m), \(n))") }
        let (mn, overflow) = m.multipliedReportingOverflow(by: n)
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "svd: shape (\(m), \(n)) is too large") }
        guard w.count == mn, u.count == m * r, s.count == r, vt.count == r * n else {
            throw SwiftPruneError.value("svd: buffer sizes do not match the shape (\(m), \(n))")
        }
        guard r > 0 else { return }
        let a = try FallibleAllocation.allocate(Double.self, count: mn)
        defer { FallibleAllocation.free(a) }
        // Scaled by 1 / max|w| so that the Gram matrix can neither overflow nor underflow.
        let scale = try convertChecked(w, into: a)
        let result = try denseSVD(a, m: m, n: n)
        defer { result.deallocate() }
        // u (m × r) and vt (r × n) from the row-stored factors.
        let left = result.transposed ? result.right : result.left   // r × m rows: columns of u
        let right = result.transposed ? result.left : result.right  // r × n rows: rows of vt
        for j in 0 ..< r { s[j] = Float(result.values[j] * scale) }
        transposeToFloat(left, rows: r, cols: m, into: u.baseAddress!)
        for i in 0 ..< r * n { vt[i] = Float(right[i]) }
    }

    /// `out` (`cols × rows`, Float) = `source` (`rows × cols`)ᵀ, in 32 × 32
    /// tiles (a column-by-column write of a tall `u` misses the cache on every element).
    static func transposeToFloat(_ source: UnsafePointer<Double>, rows: Int, cols: Int,
                                 into out: UnsafeMutablePointer<Float>) {
        let tile = 32
        var i0 = 0
        while i0 < rows {
            let i1 = min(i0 + tile, rows)
            var j0 = 0
            while j0 < cols {
                let j1 = min(j0 + tile, cols)
                for j in j0 ..< j1 {
                    for i in i0 ..< i1 { out[j * rows + i] = Float(source[i * cols + j]) }
                }
                j0 = j1
            }
            i0 = i1
        }
    }

    /// Thin SVD of a 2-D tensor.
    public static func decompose<S: BinaryFloatingPoint>(_ w: Tensor<S>) throws -> SVDResult {
        guard w.rank == 2 else { throw SwiftPruneError.value("svd needs a 2-D tensor, got shape \(w.shape)") }
        let m = w.shape[0], n = w.shape[1], r = min(m, n)
        var u = try Tensor<Float>(shape: [m, r], repeating: 0)
        var s = try Tensor<Float>(shape: [r], repeating: 0)
        var vt = try Tensor<Float>(shape: [r, n], repeating: 0)
        try w.withView { view in
            try u.withMutableView { u in
                try s.withMutableView { s in
                    try vt.withMutableView { vt in
                        try decompose(view.buffer, m: m, n: n, u: u.buffer, s: s.buffer, vt: vt.buffer)
                    }
                }
            }
        }
        return SVDResult(u: u, s: s, vt: vt)
    }

    /// The factors of `a` (row-major `m × n`, Double) with every singular
    /// vector stored as a row. For `m >= n` (`transposed == false`):
    /// `left` is `r × m` (columns of u), `right` is `r × n` (rows of vt). For
    /// `m < n` the roles are computed on `aᵀ` and `transposed` is true:
    /// `left` is `r × n` (rows of vt), `right` is `r × m` (columns of u).
    struct RowFactors {
        let left: UnsafeMutablePointer<Double>
        let right: UnsafeMutablePointer<Double>
        let values: [Double]
        let transposed: Bool
        func deallocate() { FallibleAllocation.free(left); FallibleAllocation.free(right) }
    }

    /// The core of the decomposition on a finite Double matrix.
    static func denseSVD(_ a: UnsafePointer<Double>, m: Int, n: Int) throws -> RowFactors {
        let transposed = m < n
        // Work on the tall orientation: X = a (tall) or aᵀ, of shape rows × cols, rows >= cols.
        let rows = transposed ? n : m, cols = transposed ? m : n
        // G = XᵀX (cols × cols).
        let g = try FallibleAllocation.allocate(Double.self, count: cols * cols)
        try syrk(transA: !transposed, n: cols, k: rows, alpha: 1, a: a, lda: n, c: g, ldc: cols)
        // Directions of singular values below 1e-6 · s_max (eigenvalues below
        // 1e-12 · λ_max) only need to complete the basis: their columns of u are
        // replaced by an orthonormal completion anyway (see orthonormalizeRows).
        do { _ = try SymmetricEigen.decompose(g, n: cols, negligible: 1e-12) } catch {
            FallibleAllocation.free(g)
            throw error
        }
        // Rows of g are eigenvectors, ascending eigenvalue: reversed in place to
        // descending (a second cols² buffer would cost its page faults and a copy).
        let right = g
        for j in 0 ..< cols / 2 {
            let top = right + j * cols, bottom = right + (cols - 1 - j) * cols
            for i in 0 ..< cols { let t = top[i]; top[i] = bottom[i]; bottom[i] = t }
        }
        // Rows of B = right · Xᵀ (cols × rows): B_j = X v_j.
        let left: UnsafeMutablePointer<Double>
        do { left = try FallibleAllocation.allocate(Double.self, count: cols * rows) } catch {
            FallibleAllocation.free(right)
            throw error
        }
        try gemm(transA: false, transB: !transposed, m: cols, n: rows, k: cols,
                  alpha: 1, a: right, lda: cols, b: a, ldb: n, beta: 0, c: left, ldc: rows)
        var values = try [Double](fallibleRepeating: 0, count: cols)
        for j in 0 ..< cols { values[j] = dot(left + j * rows, left + j * rows, rows).squareRoot() }
        try orthonormalizeRows(left, count: cols, length: rows, norms: values)
        // Descending order of the computed norms (they may differ slightly from the eigenvalue order).
        let order = (0 ..< cols).sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
        if order != Array(0 ..< cols) {
            permuteRows(left, order, length: rows)
            permuteRows(right, order, length: cols)
            values = order.map { values[$0] }
        }
        return RowFactors(left: left, right: right, values: values, transposed: transposed)
    }

    /// Makes the rows of `b` (count × length, count <= length) orthonormal,
    /// keeping rows whose norm is above `1e-6 · max` in direction and
    /// replacing the others by seeded random directions.
    static func orthonormalizeRows(_ b: UnsafeMutablePointer<Double>, count: Int, length: Int, norms: [Double]) throws {
        let largest = norms.max() ?? 0
        let threshold = largest * 1e-6
        var good: [Int] = [], bad: [Int] = []
        for j in 0 ..< count {
            if norms[j] > threshold && norms[j] > 0 { good.append(j) } else { bad.append(j) }
        }
        if bad.isEmpty {
            // Every row kept: normalized and orthonormalized in place (no copy of U).
            for j in 0 ..< count {
                let scale = 1 / norms[j]
                for i in 0 ..< length { b[j * length + i] *= scale }
            }
            try orthonormalizeByCholeskyQR(b, count: count, length: length)
            return
        }
        // Good rows, normalized and packed first, made exactly orthonormal.
        let packed = try FallibleAllocation.allocate(Double.self, count: count * length)
        defer { FallibleAllocation.free(packed) }
        for (row, j) in good.enumerated() {
            let scale = 1 / norms[j]
            for i in 0 ..< length { packed[row * length + i] = b[j * length + i] * scale }
        }
        try orthonormalizeByCholeskyQR(packed, count: good.count, length: length)
        // The others: an orthonormal completion, exactly orthogonal to the good rows.
        try HouseholderQR.orthonormalComplement(of: packed, basisCount: good.count, length: length,
                                       count: bad.count, into: packed + good.count * length)
        for (row, j) in (good + bad).enumerated() {
            (b + j * length).update(from: packed + row * length, count: length)
        }
    }

    /// Cholesky QR on rows until orthonormal to `acceptedDeviation` (at most three passes),
    /// modified Gram–Schmidt if Cholesky breaks down.
    static func orthonormalizeByCholeskyQR(_ b: UnsafeMutablePointer<Double>, count: Int, length: Int) throws {
        guard count > 0 else { return }
        for _ in 0 ..< 3 {
            switch try choleskyQRPass(b, count: count, length: length) {
            case .orthonormal: return
            case .improved: continue
            case .failed:
                gramSchmidtRows(b, count: count, length: length)
                gramSchmidtRows(b, count: count, length: length)
                return
            }
        }
    }

    enum PassResult { case orthonormal, improved, failed }

    /// Rows whose Gram matrix is within this of the identity (max entry) are
    /// taken as orthonormal: below the rounding of the float32 results
    /// (rounding a unit vector to float32 moves its inner products by up to
    /// ~6e-8), so a Cholesky pass — a full GEMM — would change nothing a
    /// caller can see. With the eigenvectors' orthogonality at ~1e-15 the
    /// rows of `W V / s` deviate by about `1e-16 · (s_max / s_min)²`: matrices
    /// with condition below ~1e4 skip the pass.
    static let acceptedDeviation = 1e-8

    /// One Cholesky QR pass on the rows of `b`: `G = B Bᵀ = L Lᵀ`, `B ← L⁻¹ B`.
    static func choleskyQRPass(_ b: UnsafeMutablePointer<Double>, count: Int, length: Int) throws -> PassResult {
        if count >= 32, try probedDeviation(b, count: count, length: length) <= acceptedDeviation / 10 {
            return .orthonormal
        }
        let g = try FallibleAllocation.allocate(Double.self, count: count * count)
        defer { FallibleAllocation.free(g) }
        try syrk(transA: false, n: count, k: length, alpha: 1, a: b, lda: length, c: g, ldc: count)
        var deviation = 0.0
        for i in 0 ..< count {
            for j in 0 ..< count { deviation = max(deviation, abs(g[i * count + j] - (i == j ? 1 : 0))) }
        }
        if deviation < acceptedDeviation { return .orthonormal }
        // In-place Cholesky of the lower triangle.
        for j in 0 ..< count {
            let rowJ = g + j * count
            var diagonal = rowJ[j] - dot(rowJ, rowJ, j)
            guard diagonal > 1e-20 else { return .failed }
            diagonal = diagonal.squareRoot()
            rowJ[j] = diagonal
            for i in j + 1 ..< count {
                let rowI = g + i * count
                rowI[j] = (rowI[j] - dot(rowI, rowJ, j)) / diagonal
            }
        }
        // L⁻¹ (lower triangular), in a zeroed matrix.
        let inverse = try FallibleAllocation.allocate(Double.self, count: count * count)
        defer { FallibleAllocation.free(inverse) }
        inverse.initialize(repeating: 0, count: count * count)
        // Row i of L⁻¹ is (e_i − Σ_{k<i} L[i,k] · row k of L⁻¹) / L[i,i]; row k is zero past column k.
        for i in 0 ..< count {
            let row = inverse + i * count
            for k in 0 ..< i { axpy(-g[i * count + k], inverse + k * count, row, k + 1) }
            row[i] = 1
            let scale = 1 / g[i * count + i]
            for k in 0 ... i { row[k] *= scale }
        }
        let copy = try FallibleAllocation.allocate(Double.self, count: count * length)
        defer { FallibleAllocation.free(copy) }
        copy.update(from: b, count: count * length)
        try gemm(transA: false, transB: false, m: count, n: length, k: count,
                  alpha: 1, a: inverse, lda: count, b: copy, ldb: length, beta: 0, c: b, ldc: length)
        return deviation < 1e-4 ? .orthonormal : .improved
    }

    /// Gaussian probes of `D = B Bᵀ − I`: the root mean square of `‖D g‖` over
    /// `probes` standard normal vectors `g` estimates `‖D‖_F ≥ max |D_ij|`
    /// (Hutchinson's estimator of `‖D‖_F²`; Halko, Martinsson & Tropp 2011,
    /// §4.3) at O(probes · count · length) cost instead of the O(count² ·
    /// length) of forming `B Bᵀ`. With 8 probes the estimate falls 10x below
    /// `‖D‖_F` with probability below 1e-7 (a χ²₈ tail), so the caller's
    /// acceptance at `acceptedDeviation / 10` bounds `max |D_ij|` by
    /// `acceptedDeviation` except with that probability. The probes are
    /// seeded: the same input gives the same decision.
    static func probedDeviation(_ b: UnsafePointer<Double>, count: Int, length: Int, probes: Int = 8) throws -> Double {
        let g = try FallibleAllocation.allocate(Double.self, count: count * probes)
        defer { FallibleAllocation.free(g) }
        let y = try FallibleAllocation.allocate(Double.self, count: length * probes)
        defer { FallibleAllocation.free(y) }
        var generator = GaussianGenerator(seed: 0x0a7e_5eed)
        for i in 0 ..< count * probes { g[i] = generator.next() }
        // Y = Bᵀ G (length × probes), then D G = B Y − G (count × probes), into g.
        try gemm(transA: true, transB: false, m: length, n: probes, k: count, alpha: 1, a: b, lda: length,
                 b: g, ldb: probes, beta: 0, c: y, ldc: probes)
        try gemm(transA: false, transB: false, m: count, n: probes, k: length, alpha: 1, a: b, lda: length,
                 b: y, ldb: probes, beta: -1, c: g, ldc: probes)
        let squares = dot(g, g, count * probes)
        return squares.isFinite ? (squares / Double(probes)).squareRoot() : .infinity
    }

    /// Modified Gram–Schmidt on rows (the fallback when Cholesky breaks down).
    static func gramSchmidtRows(_ b: UnsafeMutablePointer<Double>, count: Int, length: Int) {
        var generator = GaussianGenerator(seed: 0x6a5c_11de)
        for j in 0 ..< count {
            let row = b + j * length
            for attempt in 0 ..< 3 {
                for i in 0 ..< j {
                    let other = b + i * length
                    axpy(-dot(other, row, length), other, row, length)
                }
                let norm = dot(row, row, length).squareRoot()
                if norm > 1e-8 || attempt == 2 {
                    let scale = norm > 0 ? 1 / norm : 0
                    for i in 0 ..< length { row[i] *= scale }
                    break
                }
                for i in 0 ..< length { row[i] = generator.next() }
            }
        }
    }

    /// Reorders the rows of `b` (`order.count` rows of `length`): row `i` becomes old row `order[i]`.
    static func permuteRows<Element>(_ b: UnsafeMutablePointer<Element>, _ order: [Int], length: Int) {
        let copy = UnsafeMutablePointer<Element>.allocate(capacity: order.count * length)
        defer { copy.deallocate() }
        copy.update(from: b, count: order.count * length)
        for (row, source) in order.enumerated() {
            (b + row * length).update(from: copy + source * length, count: length)
        }
    }
}

/// Copies `source` into `destination` as Double divided by `max |source|`,
/// rejecting NaN and Inf, and returns that scale (1 for an all-zero source).
@inline(__always)
func convertChecked<S: BinaryFloatingPoint>(_ source: UnsafeBufferPointer<S>,
                                            into destination: UnsafeMutablePointer<Double>) throws -> Double {
    let scale = try largestMagnitude(source)
    let inverse = 1 / scale
    for i in 0 ..< source.count { destination[i] = Double(source[i]) * inverse }
    return scale
}

/// `max |x|` over `source` (1 when every value is zero).
/// - Throws: ``SwiftPruneError`` if `source` holds NaN or Inf.
@inline(__always)
func largestMagnitude<S: BinaryFloatingPoint>(_ source: UnsafeBufferPointer<S>) throws -> Double {
    var largest = 0.0
    var bad = 0
    for value in source {
        let x = Double(value)
        if !x.isFinite { bad += 1 } else if abs(x) > largest { largest = abs(x) }
    }
    guard bad == 0 else { throw SwiftPruneError.value("weights contain \(bad) NaN or Inf value(s)") }
    return largest > 0 ? largest : 1
}

/// Seeded standard normal numbers: SplitMix64 + Box–Muller. Deterministic
/// across platforms for a given seed.
struct GaussianGenerator {
    var state: UInt64
    var spare: Double?

    init(seed: UInt64) { state = seed }

    mutating func nextBits() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform number in (0, 1].
    mutating func uniform() -> Double { (Double(nextBits() >> 11) + 1) * 0x1p-53 }

    mutating func next() -> Double {
        if let value = spare { spare = nil; return value }
        let radius = (-2 * log(uniform())).squareRoot()
        let angle = 2 * Double.pi * uniform()
        spare = radius * sin(angle)
        return radius * cos(angle)
    }
}
