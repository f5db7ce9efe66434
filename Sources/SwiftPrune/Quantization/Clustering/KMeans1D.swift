#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How ``KMeans1D`` places its first centroids.
public enum ClusterInitialization: Int32, Sendable {
    /// Evenly spaced from the minimum to the maximum (`linspace(min, max, k)`,
    /// TensorFlow Model Optimization's "linear" init).
    case linear = 0
    /// k-means++ (D² sampling with greedy trials, as scikit-learn), seeded.
    case kmeansPlusPlus = 1
    /// No initialization: the globally optimal clustering by dynamic
    /// programming over the sorted values (O(k n log n), divide and conquer
    /// on the monotone split points); no Lloyd iterations are needed.
    case optimal = 2
}

/// One-dimensional k-means (weight sharing / palettization) on sorted values.
///
/// The values are radix-sorted once; with prefix sums of `x` and `x²` a
/// cluster is a contiguous index range, its mean and squared error are O(1)
/// and its boundaries (midpoints between neighbouring centroids) are found by
/// binary search, so one Lloyd iteration costs O(k log n), not O(n k).
/// Iterations run until the assignment stops changing (an exact fixed point)
/// or `maxIterations`. An empty cluster is moved to the point farthest from
/// its centroid in the cluster of largest squared error.
public struct KMeans1D: Sendable {
    /// The centroids, ascending (duplicates only when the data has fewer
    /// distinct values than clusters).
    public let centroids: [Float]
    /// The Lloyd iterations run.
    public let iterations: Int
    /// The sum of squared distances to the nearest centroid (in `Double`).
    public let inertia: Double

    /// Clusters the values of `x` into `clusters` groups.
    /// - Throws: ``SwiftPruneError`` for NaN/Inf, `clusters` outside
    ///   1...65536 or a negative `maxIterations` (0: the initial centroids, no update).
    public init(_ x: UnsafeBufferPointer<Float>, clusters k: Int, initialization: ClusterInitialization = .linear,
                maxIterations: Int = 100, seed: UInt64 = 0) throws {
        guard k >= 1 && k <= 65536 else {
            throw SwiftPruneError.value("n_clusters must be in 1..65536, got \(k)")
        }
        guard maxIterations >= 0 else {
            throw SwiftPruneError.value("max_iter must be >= 0, got \(maxIterations)")
        }
        for v in x where !v.isFinite {
            throw SwiftPruneError.value("weights contain NaN or Inf values")
        }
        let n = x.count
        guard n > 0 else {
            (centroids, iterations, inertia) = ([Float](repeating: 0, count: k), 0, 0)
            return
        }
        let s = try ClusteringRadixSort.sorted(x)
        var p1 = try [Double](fallibleRepeating: 0, count: n + 1), p2 = try [Double](fallibleRepeating: 0, count: n + 1)
        for i in 0 ..< n {
            let v = Double(s[i])
            p1[i + 1] = p1[i] + v
            p2[i + 1] = p2[i] + v * v
        }
        // Few distinct values: they are the optimal centroids.
        var distinct: [Float] = []
        for v in s where distinct.last != v {
            distinct.append(v)
            if distinct.count > k { break }
        }
        if distinct.count <= k {
            centroids = distinct + [Float](repeating: distinct[distinct.count - 1], count: k - distinct.count)
            (iterations, inertia) = (0, 0)
            return
        }
        let data = KMeansSortedData(values: s, p1: p1, p2: p2)
        var c: [Double]
        if initialization == .optimal {
            let ends = try data.optimalEnds(k)
            var start = 0
            var result = [Float](repeating: 0, count: k)
            var total = 0.0
            for j in 0 ..< k {
                let end = ends[j]
                let mean = (p1[end] - p1[start]) / Double(end - start)
                result[j] = Float(mean)
                total += data.squaredError(start, end, mean)
                start = end
            }
            (centroids, iterations, inertia) = (result, 0, total)
            return
        }
        switch initialization {
        case .linear:
            let lo = Double(s[0]), hi = Double(s[n - 1])
            c = k == 1 ? [(lo + hi) / 2] : (0 ..< k).map { lo + (hi - lo) * Double($0) / Double(k - 1) }
        case .kmeansPlusPlus:
            c = data.plusPlus(k, seed: seed)
        case .optimal:
            c = []
        }
        c.sort()
        if maxIterations == 0 {
            let initial = c.map { Float($0) }
            let finalEnds = data.ends(initial.map(Double.init))
            var total = 0.0, start = 0
            for j in 0 ..< k { total += data.squaredError(start, finalEnds[j], Double(initial[j])); start = finalEnds[j] }
            (centroids, iterations, inertia) = (initial, 0, total)
            return
        }
        var ends = data.ends(c)
        var iteration = 0
        while iteration < maxIterations {
            iteration += 1
            var relocated = false
            var start = 0
            for j in 0 ..< k {
                let end = ends[j]
                if end > start { c[j] = (p1[end] - p1[start]) / Double(end - start) }
                start = end
            }
            // Empty clusters take the farthest point of the worst cluster.
            for j in 0 ..< k where (j == 0 ? ends[0] : ends[j] - ends[j - 1]) == 0 {
                var worst = -1, worstError = 0.0, a = 0
                for i in 0 ..< k {
                    let e = data.squaredError(a, ends[i], c[i])
                    if e > worstError { (worst, worstError) = (i, e) }
                    a = ends[i]
                }
                guard worst >= 0 else { break }
                let from = worst == 0 ? 0 : ends[worst - 1], to = ends[worst]
                let left = Double(s[from]), right = Double(s[to - 1])
                c[j] = Swift.abs(left - c[worst]) >= Swift.abs(right - c[worst]) ? left : right
                relocated = true
            }
            if relocated { c.sort() }
            let next = data.ends(c)
            if next == ends && !relocated { break }
            ends = next
        }
        // Final centroids in Float, means of the final assignment.
        var start = 0
        var result = [Float](repeating: 0, count: k)
        for j in 0 ..< k {
            let end = ends[j]
            result[j] = end > start ? Float((p1[end] - p1[start]) / Double(end - start)) : Float(c[j])
            start = end
        }
        result.sort()
        centroids = result
        iterations = iteration
        var total = 0.0
        let finalEnds = data.ends(result.map(Double.init))
        start = 0
        for j in 0 ..< k {
            total += data.squaredError(start, finalEnds[j], Double(result[j]))
            start = finalEnds[j]
        }
        inertia = total
    }
}

/// Sorted values with prefix sums of `x` and `x²`.
struct KMeansSortedData {
    let values: [Float]
    let p1: [Double]
    let p2: [Double]

    var count: Int { values.count }

    /// The first index whose value is greater than `t`.
    func upperBound(_ t: Double) -> Int {
        var lo = 0, hi = values.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Double(values[mid]) <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The end index of every cluster of the ascending centroids `c`: a value
    /// at a midpoint goes to the lower cluster.
    func ends(_ c: [Double]) -> [Int] {
        var out = [Int](repeating: count, count: c.count)
        for j in 0 ..< (c.count - 1) { out[j] = upperBound((c[j] + c[j + 1]) / 2) }
        return out
    }

    /// Σ (x - c)² over `values[a..<b]`, never negative.
    func squaredError(_ a: Int, _ b: Int, _ c: Double) -> Double {
        guard b > a else { return 0 }
        let s1 = p1[b] - p1[a], s2 = p2[b] - p2[a]
        return Swift.max(0, s2 - 2 * c * s1 + c * c * Double(b - a))
    }

    /// The total squared distance to the nearest of the ascending centroids `c`,
    /// and the cluster end indices.
    func potential(_ c: [Double]) -> (Double, [Int]) {
        let e = ends(c)
        var total = 0.0, a = 0
        for j in 0 ..< c.count { total += squaredError(a, e[j], c[j]); a = e[j] }
        return (total, e)
    }

    /// The index of the point at which the cumulative potential (by cluster,
    /// then by index) first exceeds `u`.
    func sample(_ u: Double, _ c: [Double], _ e: [Int]) -> Int {
        var remaining = u, a = 0
        for j in 0 ..< c.count {
            let w = squaredError(a, e[j], c[j])
            if remaining < w || j == c.count - 1 {
                var lo = a, hi = Swift.max(a, e[j] - 1)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if squaredError(a, mid + 1, c[j]) > remaining { hi = mid } else { lo = mid + 1 }
                }
                return Swift.min(lo, count - 1)
            }
            remaining -= w
            a = e[j]
        }
        return count - 1
    }

    /// The squared error of `values[a..<b]` around its mean.
    @inline(__always)
    func segmentCost(_ a: Int, _ b: Int) -> Double {
        let count = Double(b - a)
        let s1 = p1[b] - p1[a]
        return Swift.max(0, (p2[b] - p2[a]) - s1 * s1 / count)
    }

    /// The end indices of the `k` contiguous segments of least total squared
    /// error (each non-empty; needs at least `k` values). Layer by layer,
    /// `cost[m][i] = min_j cost[m-1][j] + segmentCost(j, i)`, whose best `j`
    /// is monotone in `i`: divide and conquer, O(n log n) per layer.
    func optimalEnds(_ k: Int) throws -> [Int] {
        let n = count
        var previous = try [Double](fallibleRepeating: .infinity, count: n + 1)
        var current = try [Double](fallibleRepeating: .infinity, count: n + 1)
        var split = try [Int32](fallibleRepeating: 0, count: (k - 1) * (n + 1))
        for i in 1 ... n { previous[i] = segmentCost(0, i) }
        for layer in 1 ..< k {
            // Segments 0...layer cover values[0..<i], i >= layer + 1.
            current.withUnsafeMutableBufferPointer { cur in
                previous.withUnsafeBufferPointer { prev in
                    split.withUnsafeMutableBufferPointer { sp in
                        let row = sp.baseAddress! + (layer - 1) * (n + 1)
                        let curBase = cur.baseAddress!, prevBase = prev.baseAddress!
                        func solve(_ lo: Int, _ hi: Int, _ optLo: Int, _ optHi: Int) {
                            guard lo <= hi else { return }
                            let mid = (lo + hi) / 2
                            var best = Double.infinity, bestJ = optLo
                            let last = Swift.min(mid - 1, optHi)
                            var j = optLo
                            while j <= last {
                                let v = prevBase[j] + segmentCost(j, mid)
                                if v < best { best = v; bestJ = j }
                                j += 1
                            }
                            curBase[mid] = best
                            row[mid] = Int32(truncatingIfNeeded: bestJ)
                            solve(lo, mid - 1, optLo, bestJ)
                            solve(mid + 1, hi, bestJ, optHi)
                        }
                        let lo = layer + 1, hi = n
                        // The two halves of the top split are independent: run them concurrently.
                        let mid = (lo + hi) / 2
                        solve(mid, mid, layer, n - 1)
                        let bestJ = Int(row[mid])
                        let workers = Threading.workerCount(for: n, minimumPerWorker: 1 << 14) > 1 ? 2 : 1
                        parallelFor(workers: workers) { worker in
                            if workers == 1 || worker == 0 { solve(lo, mid - 1, layer, bestJ) }
                            if workers == 1 || worker == 1 { solve(mid + 1, hi, bestJ, n - 1) }
                        }
                    }
                }
            }
            swap(&previous, &current)
        }
        var ends = [Int](repeating: n, count: k)
        var end = n
        for layer in stride(from: k - 1, to: 0, by: -1) {
            let j = Int(split[(layer - 1) * (n + 1) + end])
            ends[layer - 1] = j
            end = j
        }
        return ends
    }

    /// k-means++ with 2 + ⌊ln k⌋ greedy trials per centroid (scikit-learn's rule).
    func plusPlus(_ k: Int, seed: UInt64) -> [Double] {
        var random = KMeansRandom(seed: seed)
        var centers = [Double(values[Int(random.next() % UInt64(count))])]
        let trials = 2 + Int(log(Double(k)))
        while centers.count < k {
            let sortedCenters = centers.sorted()
            let (total, e) = potential(sortedCenters)
            var best: Double? = nil, bestPotential = Double.infinity
            for _ in 0 ..< trials {
                let u = random.unit() * total
                let candidate = Double(values[sample(u, sortedCenters, e)])
                let p = potential((sortedCenters + [candidate]).sorted()).0
                if p < bestPotential { (best, bestPotential) = (candidate, p) }
            }
            centers.append(best ?? Double(values[0]))
        }
        return centers
    }
}

/// A small seeded generator (KMeansRandom).
struct KMeansRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
