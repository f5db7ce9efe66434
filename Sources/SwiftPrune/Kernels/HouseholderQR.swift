/// Householder QR of a thin matrix stored by columns: the randomized SVD's
/// range finder (Float) and the SVD's orthonormal completions (Double) share
/// this one generic implementation.
///
/// The matrix `Y` (`length × count`, `count ≤ length`) is passed as its
/// `count` columns, each a contiguous row of `rows` (so `rows` is `Yᵀ` in
/// row-major order). Every inner loop is then a contiguous dot product or
/// axpy, and the reflector applications to the remaining columns are split
/// over workers. The result is backward stable whatever the conditioning
/// of `Y`, including exact rank deficiency, which is what power iterations
/// of a randomized SVD need.
public enum HouseholderQR {
    /// Replaces the columns of `Y` (the rows of `rows`) by the first `count`
    /// columns of `Q` in `Y = QR`: orthonormal rows spanning the same
    /// leading subspaces.
    /// - Throws: ``SwiftPruneError`` if `count > length` or sizes are negative.
    public static func orthonormalizeRows(_ rows: UnsafeMutablePointer<Float>, count: Int, length: Int) throws {
        guard count >= 0, length >= 0, count <= length else {
            throw SwiftPruneError.value("householder QR needs 0 <= count <= length, got \(count) and \(length)")
        }
        guard count > 0 else { return }
        let (total, overflow) = count.multipliedReportingOverflow(by: length)
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "householder QR: size overflows") }
        let tau = try factor(rows, count: count, length: length)
        // Q e_j = H_0 H_1 ⋯ H_j e_j, row by row into a copy.
        try ScratchPool.withFallible(Float.self, count: total) { q in
            formColumns(of: rows, tau: tau, count: count, length: length, first: 0, columns: count, into: q)
            rows.update(from: q, count: total)
        }
    }

    /// Orthonormal completion of a set of rows: writes into `out` (`count × length`)
    /// `count` unit rows orthogonal to the `basisCount` rows of `basis` (all of
    /// `length`); needs `basisCount + count <= length`.
    ///
    /// Row `t` of the result is `Q e_{r+t}` with `Q = H_0 ⋯ H_{r-1}` from the QR
    /// of the basis, which costs O(r · length) per row: for a basis of r rows,
    /// O(r · length · count) in all instead of the O(length · count²) of
    /// orthogonalizing random rows. This is what low-rank (rank-deficient)
    /// matrices need: a large null space to span, against a small basis.
    /// - Throws: `.outOfMemory` if the basis copy cannot be allocated.
    static func orthonormalComplement<T: HouseholderScalar>(of basis: UnsafePointer<T>, basisCount r: Int, length: Int,
                                                            count: Int, into out: UnsafeMutablePointer<T>) throws {
        guard count > 0 else { return }
        let work = try FallibleAllocation.allocate(T.self, count: r * length, "the orthonormal completion's basis")
        defer { FallibleAllocation.free(work) }
        work.update(from: basis, count: r * length)
        let tau = try factor(work, count: r, length: length)
        formColumns(of: work, tau: tau, count: r, length: length, first: r, columns: count, into: out)
    }

    /// Householder QR in place of `count` rows of `length` (the columns of `Y`):
    /// afterwards row j holds the reflector v_j on entries j..< length (v_j[j] = 1);
    /// returns the reflectors' τ (H_j = I − τ_j v_j v_jᵀ; τ = 0 for a zero column).
    static func factor<T: HouseholderScalar>(_ rows: UnsafeMutablePointer<T>, count: Int, length: Int) throws -> [T] {
        var tau = try [T](fallibleRepeating: 0, count: count, "householder QR's tau")
        for j in 0 ..< count {
            let x = rows + j * length + j
            let size = length - j
            let tail: T = size > 1 ? T.dot(x + 1, x + 1, size - 1) : 0
            let x0 = x[0]
            if tail == 0 {
                tau[j] = 0
                x[0] = 1
                continue
            }
            let norm = (x0 * x0 + tail).squareRoot()
            let beta = x0 >= 0 ? -norm : norm
            tau[j] = (beta - x0) / beta
            let scale = 1 / (x0 - beta)
            x[0] = 1
            for i in 1 ..< size { x[i] *= scale }
            let t = tau[j]
            let remaining = count - j - 1
            let workers = Threading.workerCount(for: remaining * size, minimumPerWorker: 1 << 15)
            parallelFor(workers: workers) { worker in
                for i in partitionRange(remaining, parts: workers, index: worker) {
                    let y = rows + (j + 1 + i) * length + j
                    T.axpy(-t * T.dot(x, y, size), x, y, size)
                }
            }
        }
        return tau
    }

    /// Writes `Q e_{first+t}` for t in `0 ..< columns` as rows of `q`, with
    /// `Q = H_0 ⋯ H_{count-1}` from ``factor(_:count:length:)``. Only the
    /// reflectors H_i with i ≤ first + t touch e_{first+t}.
    static func formColumns<T: HouseholderScalar>(of rows: UnsafePointer<T>, tau: [T], count: Int, length: Int,
                                                  first: Int, columns: Int, into q: UnsafeMutablePointer<T>) {
        q.update(repeating: 0, count: columns * length)
        // Rows need up to min(first + t + 1, count) reflectors each; interleave rows over
        // workers so that triangular work (first == 0) is balanced too.
        let workers = Threading.workerCount(for: columns * max(1, min(count, first + columns / 2)) * length,
                                            minimumPerWorker: 1 << 18)
        tau.withUnsafeBufferPointer { tau in
            parallelFor(workers: workers) { worker in
                var t = worker
                while t < columns {
                    let column = first + t
                    let z = q + t * length
                    z[column] = 1
                    var i = min(column, count - 1)
                    while i >= 0 {
                        let ti = tau[i]
                        if ti != 0 {
                            let v = rows + i * length + i
                            let size = length - i
                            T.axpy(-ti * T.dot(v, z + i, size), v, z + i, size)
                        }
                        i -= 1
                    }
                    t += workers
                }
            }
        }
    }
}

/// The scalars Householder QR runs in, with the vectorized dot product and
/// axpy its loops are made of: Float for the randomized SVD's range finder,
/// Double for the SVD's orthonormal completions.
protocol HouseholderScalar: BinaryFloatingPoint, BitwiseCopyable {
    static func dot(_ x: UnsafePointer<Self>, _ y: UnsafePointer<Self>, _ count: Int) -> Self
    static func axpy(_ alpha: Self, _ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, _ count: Int)
}

extension Float: HouseholderScalar {
    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int) -> Float { dotFloat(x, y, count) }
    @inline(__always)
    static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        axpyFloat(alpha, x, y, count)
    }
}

extension Double: HouseholderScalar {
    @inline(__always)
    static func dot(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, _ count: Int) -> Double {
        SwiftPrune.dot(x, y, count)
    }
    @inline(__always)
    static func axpy(_ alpha: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ count: Int) {
        SwiftPrune.axpy(alpha, x, y, count)
    }
}

/// Σ x[i] y[i] in Float with two 8-lane accumulators.
@inline(__always)
func dotFloat(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int) -> Float {
    typealias V = SIMD8<Float>
    var s0 = V(), s1 = V()
    var i = 0
    while i + 16 <= count {
        s0 = s0.addingProduct(loadVector(x + i) as V, loadVector(y + i) as V)
        s1 = s1.addingProduct(loadVector(x + i + 8) as V, loadVector(y + i + 8) as V)
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < count { total += x[i] * y[i]; i += 1 }
    return total
}

/// y += alpha x in Float.
@inline(__always)
func axpyFloat(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
    typealias V = SIMD8<Float>
    let a = V(repeating: alpha)
    var i = 0
    while i + 8 <= count {
        storeVector((loadVector(y + i) as V).addingProduct(a, loadVector(x + i) as V), y + i)
        i += 8
    }
    while i < count { y[i] += alpha * x[i]; i += 1 }
}
