/// Orthonormal completion of a set of rows: `count` unit rows orthogonal to
/// `basisCount` given rows (all of `length`), from the Householder QR of the
/// given rows. Row `t` of the result is `Q e_{r+t}` with
/// `Q = H_0 ⋯ H_{r-1}`, which costs O(r · length) per row: for a basis of r
/// rows, O(r · length · count) in all instead of the O(length · count²) of
/// orthogonalizing random rows. This is what low-rank (rank-deficient)
/// matrices need: a large null space to span, against a small basis.
enum OrthonormalComplement {
    /// Writes `count` orthonormal rows into `out` (count × length), orthogonal
    /// to the rows of `basis` (basisCount × length); needs basisCount + count <= length.
    static func complete(basis: UnsafePointer<Double>, basisCount r: Int, length: Int,
                         count: Int, into out: UnsafeMutablePointer<Double>) {
        guard count > 0 else { return }
        // Householder QR of the basis rows (as columns), reflectors kept in `work`.
        let work = UnsafeMutablePointer<Double>.allocate(capacity: max(1, r * length))
        defer { work.deallocate() }
        work.update(from: basis, count: r * length)
        var tau = [Double](repeating: 0, count: r)
        for j in 0 ..< r {
            let x = work + j * length + j
            let size = length - j
            let tail = size > 1 ? dot(x + 1, x + 1, size - 1) : 0
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
            let remaining = r - j - 1
            let workers = Threading.workerCount(for: remaining * size, minimumPerWorker: 1 << 15)
            parallelFor(workers: workers) { worker in
                for i in partitionRange(remaining, parts: workers, index: worker) {
                    let y = work + (j + 1 + i) * length + j
                    axpy(-t * dot(x, y, size), x, y, size)
                }
            }
        }
        // Row t = H_0 H_1 ⋯ H_{r-1} e_{r+t}.
        let workers = Threading.workerCount(for: count * max(1, r) * length, minimumPerWorker: 1 << 18)
        tau.withUnsafeBufferPointer { tau in
            parallelFor(workers: workers) { worker in
                for t in partitionRange(count, parts: workers, index: worker) {
                    let z = out + t * length
                    z.update(repeating: 0, count: length)
                    z[r + t] = 1
                    var i = r - 1
                    while i >= 0 {
                        let ti = tau[i]
                        if ti != 0 {
                            let v = work + i * length + i
                            let size = length - i
                            axpy(-ti * dot(v, z + i, size), v, z + i, size)
                        }
                        i -= 1
                    }
                }
            }
        }
    }
}
