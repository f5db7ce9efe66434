/// Assignment of values to the nearest entry of an ascending codebook
/// (centroids), and the inverse lookup.
public enum Codebook {
    /// Checks that `centroids` is non-empty, finite and ascending.
    static func validate(_ centroids: UnsafeBufferPointer<Float>, maxCount: Int) throws {
        guard centroids.count >= 1 && centroids.count <= maxCount else {
            throw SwiftPruneError.value("the codebook must hold 1...\(maxCount) centroids, got \(centroids.count)")
        }
        for i in 0 ..< centroids.count {
            guard centroids[i].isFinite else { throw SwiftPruneError.value("centroids contain NaN or Inf") }
            guard i == 0 || centroids[i - 1] <= centroids[i] else {
                throw SwiftPruneError.value("centroids must be in ascending order")
            }
        }
    }

    /// Writes for every value of `x` the index of its nearest centroid (a value
    /// exactly between two goes to the lower one; among equal centroids the
    /// first). `I` is `UInt8` (≤ 256 centroids) or `UInt16` (≤ 65536).
    /// - Throws: ``SwiftPruneError`` for NaN/Inf values, a bad codebook or sizes.
    @_specialize(where I == UInt8)
    @_specialize(where I == UInt16)
    public static func assign<I: FixedWidthInteger & UnsignedInteger>(
        _ x: UnsafeBufferPointer<Float>, centroids: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<I>
    ) throws {
        try validate(centroids, maxCount: Int(I.max) + 1)
        guard out.count == x.count else {
            throw SwiftPruneError.value("indices have \(out.count) elements, values have \(x.count)")
        }
        let k = centroids.count
        // Midpoints padded to a power of two with +inf for a branchless search.
        var size = 1
        while size < k { size <<= 1 }
        var midpoints = try [Double](fallibleRepeating: .infinity, count: size)
        for j in 0 ..< (k - 1) { midpoints[j] = (Double(centroids[j]) + Double(centroids[j + 1])) / 2 }
        guard x.count > 0 else { return }
        if k <= smallCodebook {
            try assignSmall(x, midpoints: Array(midpoints[0 ..< (k - 1)]), into: out)
            return
        }
        let src = x.baseAddress!, dst = out.baseAddress!
        let workers = Threading.workerCount(for: x.count, minimumPerWorker: 1 << 15)
        var bad = [Bool](repeating: false, count: workers)
        midpoints.withUnsafeBufferPointer { m in
            bad.withUnsafeMutableBufferPointer { flags in
                let mid = m.baseAddress!, flag = flags.baseAddress!
                parallelFor(workers: workers) { worker in
                    var nonFinite = false
                    for i in partitionRange(x.count, parts: workers, index: worker) {
                        let v = src[i]
                        nonFinite = nonFinite || !v.isFinite
                        let d = Double(v)
                        // Count of midpoints < v (binary search over the padded array).
                        var index = 0, step = size >> 1
                        while step > 0 {
                            if mid[index + step - 1] < d { index += step }
                            step >>= 1
                        }
                        if mid[index] < d { index += 1 }
                        dst[i] = I(truncatingIfNeeded: Swift.min(index, k - 1))
                    }
                    flag[worker] = nonFinite
                }
            }
        }
        if bad.contains(true) { throw SwiftPruneError.value("weights contain NaN or Inf values") }
    }

    /// Codebooks up to this size are searched by counting thresholds with SIMD.
    static let smallCodebook = 32

    /// The largest `Float` not above `m`: for a `Float` x, `x > m` exactly
    /// when `x > floorFloat(m)`.
    static func floorFloat(_ m: Double) -> Float {
        let f = Float(m)
        return Double(f) > m ? f.nextDown : f
    }

    /// The index of each value as the count of midpoints below it, eight
    /// values at a time.
    static func assignSmall<I: FixedWidthInteger & UnsignedInteger>(
        _ x: UnsafeBufferPointer<Float>, midpoints: [Double], into out: UnsafeMutableBufferPointer<I>
    ) throws {
        let thresholds = midpoints.map(floorFloat)
        let src = x.baseAddress!, dst = out.baseAddress!
        let workers = Threading.workerCount(for: x.count, minimumPerWorker: 1 << 15)
        var bad = [Float](repeating: 0, count: workers)
        thresholds.withUnsafeBufferPointer { tb in
            bad.withUnsafeMutableBufferPointer { flags in
                let flag = flags.baseAddress!
                parallelFor(workers: workers) { worker in
                    let range = partitionRange(x.count, parts: workers, index: worker)
                    var nonFinite = SIMD8<Float>(repeating: 0)
                    var i = range.lowerBound
                    while i + 8 <= range.upperBound {
                        let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
                        nonFinite += v - v
                        var index = SIMD8<Int32>(repeating: 0)
                        for t in tb { index = index.replacing(with: index &+ 1, where: v .> SIMD8<Float>(repeating: t)) }
                        for lane in 0 ..< 8 { dst[i + lane] = I(truncatingIfNeeded: index[lane]) }
                        i += 8
                    }
                    var tail: Float = 0
                    while i < range.upperBound {
                        let v = src[i]
                        tail += v - v
                        var index = 0
                        for t in tb where v > t { index += 1 }
                        dst[i] = I(truncatingIfNeeded: index)
                        i += 1
                    }
                    flag[worker] = nonFinite.sum() + tail
                }
            }
        }
        if bad.contains(where: { !($0 == 0) }) { throw SwiftPruneError.value("weights contain NaN or Inf values") }
    }

    /// `out[i] = centroids[indices[i]]`.
    /// - Throws: ``SwiftPruneError`` if an index is out of range or sizes differ.
    @_specialize(where I == UInt8)
    @_specialize(where I == UInt16)
    public static func lookup<I: FixedWidthInteger & UnsignedInteger>(
        _ indices: UnsafeBufferPointer<I>, centroids: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>
    ) throws {
        guard out.count == indices.count else {
            throw SwiftPruneError.value("output has \(out.count) elements, indices have \(indices.count)")
        }
        guard indices.count > 0 else { return }
        guard centroids.count > 0 else { throw SwiftPruneError.value("the codebook is empty") }
        let src = indices.baseAddress!, dst = out.baseAddress!, table = centroids.baseAddress!
        let last = centroids.count - 1
        let workers = Threading.workerCount(for: indices.count, minimumPerWorker: 1 << 16)
        var worst = [Int](repeating: 0, count: workers)
        worst.withUnsafeMutableBufferPointer { w in
            let wBase = w.baseAddress!
            parallelFor(workers: workers) { worker in
                var largest = 0
                for i in partitionRange(indices.count, parts: workers, index: worker) {
                    let index = Int(src[i])
                    largest = Swift.max(largest, index)
                    dst[i] = table[Swift.min(index, last)]
                }
                wBase[worker] = largest
            }
        }
        if let largest = worst.max(), largest > last {
            throw SwiftPruneError.value("index \(largest) is out of range for \(centroids.count) centroids")
        }
    }
}
