/// Householder QR of a thin matrix stored by columns, for range finding.
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
        // Factor in place: row j holds v_j on entries j..< length (v_j[j] = 1).
        var tau = try [Float](fallibleRepeating: 0, count: count)
        for j in 0 ..< count {
            let x = rows + j * length + j
            let size = length - j
            var tail: Float = 0
            if size > 1 { tail = dotFloat(x + 1, x + 1, size - 1) }
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
                    let s = t * dotFloat(x, y, size)
                    axpyFloat(-s, x, y, size)
                }
            }
        }
        // Q e_j = H_0 H_1 ⋯ H_j e_j, row by row into a copy.
        ScratchPool.with(Float.self, count: total) { q in
            formQ(rows, tau: tau, count: count, length: length, into: q)
            rows.update(from: q, count: total)
        }
    }

    /// Writes the first `count` columns of `Q = H_0 ⋯ H_{count-1}` (as rows) into `q`.
    static func formQ(_ rows: UnsafeMutablePointer<Float>, tau: [Float], count: Int, length: Int,
                      into q: UnsafeMutablePointer<Float>) {
        q.update(repeating: 0, count: count * length)
        let workers = Threading.workerCount(for: count * count * length / 2, minimumPerWorker: 1 << 18)
        tau.withUnsafeBufferPointer { tau in
            parallelFor(workers: workers) { worker in
                // Interleave rows so that the triangular work is balanced.
                var j = worker
                while j < count {
                    let z = q + j * length
                    z[j] = 1
                    var i = j
                    while i >= 0 {
                        let t = tau[i]
                        if t != 0 {
                            let v = rows + i * length + i
                            let size = length - i
                            let s = t * dotFloat(v, z + i, size)
                            axpyFloat(-s, v, z + i, size)
                        }
                        i -= 1
                    }
                    j += workers
                }
            }
        }
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
