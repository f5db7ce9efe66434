/// How ``lowRank(_:m:n:selector:method:seed:a:b:)`` chooses the rank `k`.
public enum RankSelector: Equatable {
    /// Exactly `k`, in `0 ... min(m, n)`.
    case rank(Int)
    /// The smallest `k` with `Σ s²[..<k] / Σ s² ≥ energy`, `energy` in [0, 1]
    /// (0 for an all-zero matrix).
    case energy(Double)
    /// The largest `k` with `k · (m + n) ≤ ratio · m · n` (the factors take at
    /// most `ratio` of the dense parameters), `ratio` > 0, capped at `min(m, n)`.
    case ratio(Double)

    /// The rank for an `m × n` matrix; `singularValues` (descending) are only read for `.energy`.
    /// - Throws: ``SwiftPruneError`` for a value out of range.
    public func rank(m: Int, n: Int, singularValues: UnsafeBufferPointer<Float>? = nil) throws -> Int {
        let limit = min(m, n)
        switch self {
        case .rank(let k):
            guard k >= 0 && k <= limit else {
                throw SwiftPruneError.value("rank must be in [0, \(limit)] for a (\(m), \(n)) matrix, got \(k)")
            }
            return k
        case .ratio(let ratio):
            guard ratio > 0 && ratio.isFinite else {
                throw SwiftPruneError.value("ratio must be a positive finite number, got \(ratio)")
            }
            guard m + n > 0 else { return 0 }
            // The largest k with k (m + n) <= ratio m n, tested with that very expression.
            let budget = ratio * Double(m) * Double(n), width = Double(m + n)
            let estimate = (budget / width).rounded(.down)
            guard estimate < Double(limit) else { return limit }
            var k = max(0, Int(estimate))
            while k < limit && Double(k + 1) * width <= budget { k += 1 }
            while k > 0 && Double(k) * width > budget { k -= 1 }
            return k
        case .energy(let energy):
            guard energy >= 0 && energy <= 1 else {
                throw SwiftPruneError.value("energy must be in [0, 1], got \(energy)")
            }
            guard let s = singularValues, s.count == limit else {
                throw SwiftPruneError.value("energy selection needs the \(limit) singular values")
            }
            var total = 0.0
            for value in s { total += Double(value) * Double(value) }
            guard total > 0 else { return 0 }
            var partial = 0.0
            for k in 0 ..< limit {
                if partial >= energy * total { return k }
                partial += Double(s[k]) * Double(s[k])
            }
            return limit
        }
    }

    /// The rank when it is known without singular values, else `min(m, n)`
    /// (an upper bound for buffer sizes).
    public func maximumRank(m: Int, n: Int) throws -> Int {
        if case .energy(let energy) = self {
            guard energy >= 0 && energy <= 1 else {
                throw SwiftPruneError.value("energy must be in [0, 1], got \(energy)")
            }
            return min(m, n)
        }
        return try rank(m: m, n: n)
    }
}

/// Which SVD ``lowRank(_:m:n:selector:method:seed:a:b:)`` uses.
public enum LowRankMethod: Int32 {
    /// Randomized when the rank is known in advance, at most `min(m, n) / 4`
    /// and `min(m, n) ≥ 128`; the exact SVD otherwise (always for `.energy`).
    case auto = 0
    /// The exact dense SVD.
    case svd = 1
    /// ``RandomizedSVD`` with its defaults (10 oversamples, scikit-learn's power iterations).
    case randomized = 2

    /// Whether `.auto` (or the explicit choice) runs the randomized SVD.
    func usesRandomized(selector: RankSelector, rank: Int, m: Int, n: Int) -> Bool {
        switch self {
        case .svd: return false
        case .randomized: if case .energy = selector { return false } else { return true }
        case .auto:
            if case .energy = selector { return false }
            let limit = min(m, n)
            return limit >= 128 && rank * 4 <= limit
        }
    }
}

/// Low-rank factors `a` (`m × k`) and `b` (`k × n`) with `a · b ≈ w`:
/// `a = U_k · diag(s_k)`, `b = V_kᵀ` from the (exact or randomized) SVD.
public struct LowRankFactors {
    public let a: Tensor<Float>
    public let b: Tensor<Float>
    public var rank: Int { b.shape[0] }
}

/// Writes the rank-`k` factors of the row-major `m × n` matrix `w` into
/// `a` (`m × k`, row stride `k`) and `b` (`k × n`) and returns `k`. The
/// buffers must hold at least `m · capacity` and `capacity · n` elements,
/// `capacity ≥` ``RankSelector/maximumRank(m:n:)``.
/// - Throws: ``SwiftPruneError`` for NaN/Inf, a bad selector value or small buffers.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func lowRank<S: BinaryFloatingPoint>(
    _ w: UnsafeBufferPointer<S>, m: Int, n: Int, selector: RankSelector,
    method: LowRankMethod = .auto, seed: UInt64 = 0,
    a: UnsafeMutableBufferPointer<Float>, b: UnsafeMutableBufferPointer<Float>
) throws -> Int {
    guard m >= 0, n >= 0 else { throw SwiftPruneError.value("low_rank: negative shape (\(m), \(n))") }
    let (mn, overflow) = m.multipliedReportingOverflow(by: n)
    guard !overflow, w.count == mn else {
        throw SwiftPruneError.value("low_rank: the weight buffer does not match the shape (\(m), \(n))")
    }
    let maximum = try selector.maximumRank(m: m, n: n)
    guard a.count >= m * maximum, b.count >= maximum * n else {
        throw SwiftPruneError.value("low_rank: factor buffers are too small for rank \(maximum)")
    }
    let known = maximum
    if method.usesRandomized(selector: selector, rank: known, m: m, n: n) {
        let k = known
        var s = try [Float](fallibleRepeating: 0, count: k, "the singular values")
        try s.withUnsafeMutableBufferPointer { s in
            try RandomizedSVD.decompose(w, m: m, n: n, rank: k, seed: seed,
                                        u: UnsafeMutableBufferPointer(rebasing: a[..<(m * k)]), s: s,
                                        vt: UnsafeMutableBufferPointer(rebasing: b[..<(k * n)]))
        }
        scaleColumns(a, m: m, k: k, by: s)
        return k
    }
    let r = min(m, n)
    var u = try [Float](fallibleRepeating: 0, count: m * r)
    var s = try [Float](fallibleRepeating: 0, count: r)
    var vt = try [Float](fallibleRepeating: 0, count: r * n)
    try u.withUnsafeMutableBufferPointer { u in
        try s.withUnsafeMutableBufferPointer { s in
            try vt.withUnsafeMutableBufferPointer { vt in
                try SingularValueDecomposition.decompose(w, m: m, n: n, u: u, s: s, vt: vt)
            }
        }
    }
    let k = try s.withUnsafeBufferPointer { try selector.rank(m: m, n: n, singularValues: $0) }
    for i in 0 ..< m { for j in 0 ..< k { a[i * k + j] = u[i * r + j] * s[j] } }
    for j in 0 ..< k * n { b[j] = vt[j] }
    return k
}

/// Rank-`k` factors of a 2-D tensor; see ``lowRank(_:m:n:selector:method:seed:a:b:)``.
public func lowRank<S: BinaryFloatingPoint>(
    _ w: Tensor<S>, selector: RankSelector, method: LowRankMethod = .auto, seed: UInt64 = 0
) throws -> LowRankFactors {
    guard w.rank == 2 else { throw SwiftPruneError.value("low_rank needs a 2-D tensor, got shape \(w.shape)") }
    let m = w.shape[0], n = w.shape[1]
    let capacity = try selector.maximumRank(m: m, n: n)
    var a = try [Float](fallibleRepeating: 0, count: m * capacity), b = try [Float](fallibleRepeating: 0, count: capacity * n)
    let k = try w.withView { view in
        try a.withUnsafeMutableBufferPointer { a in
            try b.withUnsafeMutableBufferPointer { b in
                try lowRank(view.buffer, m: m, n: n, selector: selector, method: method, seed: seed, a: a, b: b)
            }
        }
    }
    return LowRankFactors(a: try Tensor(shape: [m, k], scalars: Array(a[..<(m * k)])),
                          b: try Tensor(shape: [k, n], scalars: Array(b[..<(k * n)])))
}

/// a[i, j] *= s[j] for an m × k row-major block.
func scaleColumns(_ a: UnsafeMutableBufferPointer<Float>, m: Int, k: Int, by s: UnsafeBufferPointer<Float>) {
    for i in 0 ..< m { for j in 0 ..< k { a[i * k + j] *= s[j] } }
}
func scaleColumns(_ a: UnsafeMutableBufferPointer<Float>, m: Int, k: Int, by s: [Float]) {
    s.withUnsafeBufferPointer { scaleColumns(a, m: m, k: k, by: $0) }
}

/// Thin SVD of a 2-D tensor; see ``SingularValueDecomposition``.
public func svd<S: BinaryFloatingPoint>(_ w: Tensor<S>) throws -> SVDResult {
    try SingularValueDecomposition.decompose(w)
}

/// Rank-`rank` randomized SVD of a 2-D tensor; see ``RandomizedSVD``.
public func randomizedSVD<S: BinaryFloatingPoint>(
    _ w: Tensor<S>, rank: Int, oversample: Int = 10, powerIterations: Int? = nil, seed: UInt64 = 0
) throws -> SVDResult {
    try RandomizedSVD.decompose(w, rank: rank, oversample: oversample, powerIterations: powerIterations, seed: seed)
}
