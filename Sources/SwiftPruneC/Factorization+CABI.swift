import CSwiftPrune
import SwiftPrune

/// Checks a C matrix shape and returns (m, n, m * n).
@inline(__always)
func matrixShape(_ m: Int64, _ n: Int64, _ name: String) throws -> (Int, Int, Int64) {
    guard m >= 0, n >= 0 else { throw SwiftPruneError.value("\(name): negative shape (\(m), \(n))") }
    let (count, overflow) = m.multipliedReportingOverflow(by: n)
    guard !overflow else { throw SwiftPruneError(.outOfMemory, "\(name): shape (\(m), \(n)) is too large") }
    return (Int(m), Int(n), count)
}

@inline(__always)
func svdExport<S: BinaryFloatingPoint>(
    _ w: UnsafePointer<S>?, _ m: Int64, _ n: Int64,
    _ u: UnsafeMutablePointer<Float>?, _ s: UnsafeMutablePointer<Float>?, _ vt: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let (rows, cols, count) = try matrixShape(m, n, "w")
        let r = Int64(min(rows, cols))
        try SingularValueDecomposition.decompose(
            inputBuffer(w, count, "w"), m: rows, n: cols,
            u: outputBuffer(u, m * r, "u_out"), s: outputBuffer(s, r, "s_out"), vt: outputBuffer(vt, r * n, "vt_out"))
    }
}

@_cdecl("sp_svd_f32")
public func spSVDF32(_ w: UnsafePointer<Float>?, _ m: Int64, _ n: Int64, _ u: UnsafeMutablePointer<Float>?,
                     _ s: UnsafeMutablePointer<Float>?, _ vt: UnsafeMutablePointer<Float>?) -> sp_status {
    svdExport(w, m, n, u, s, vt)
}

@_cdecl("sp_svd_f64")
public func spSVDF64(_ w: UnsafePointer<Double>?, _ m: Int64, _ n: Int64, _ u: UnsafeMutablePointer<Float>?,
                     _ s: UnsafeMutablePointer<Float>?, _ vt: UnsafeMutablePointer<Float>?) -> sp_status {
    svdExport(w, m, n, u, s, vt)
}

@inline(__always)
func randomizedSVDExport<S: BinaryFloatingPoint>(
    _ w: UnsafePointer<S>?, _ m: Int64, _ n: Int64, _ rank: Int64, _ oversample: Int64, _ powerIters: Int64,
    _ seed: UInt64, _ method: Int32, _ u: UnsafeMutablePointer<Float>?, _ s: UnsafeMutablePointer<Float>?,
    _ vt: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        guard let method = RandomizedSVD.Method(rawValue: method) else {
            throw SwiftPruneError.value("randomized_svd method must be 0 (krylov) or 1 (subspace), got \(method)")
        }
        let (rows, cols, count) = try matrixShape(m, n, "w")
        guard rank >= 0 && rank <= Int64(min(rows, cols)) else {
            throw SwiftPruneError.value("rank must be in [0, \(min(rows, cols))] for a (\(m), \(n)) matrix, got \(rank)")
        }
        guard oversample >= 0 && oversample <= Int64(Int32.max) else {
            throw SwiftPruneError.value("oversample must be in [0, \(Int32.max)], got \(oversample)")
        }
        try RandomizedSVD.decompose(
            inputBuffer(w, count, "w"), m: rows, n: cols, rank: Int(rank), oversample: Int(oversample),
            powerIterations: powerIters < 0 ? nil : Int(powerIters), seed: seed, method: method,
            u: outputBuffer(u, m * rank, "u_out"), s: outputBuffer(s, rank, "s_out"),
            vt: outputBuffer(vt, rank * n, "vt_out"))
    }
}

@_cdecl("sp_randomized_svd_f32")
public func spRandomizedSVDF32(
    _ w: UnsafePointer<Float>?, _ m: Int64, _ n: Int64, _ rank: Int64, _ oversample: Int64, _ powerIters: Int64,
    _ seed: UInt64, _ u: UnsafeMutablePointer<Float>?, _ s: UnsafeMutablePointer<Float>?,
    _ vt: UnsafeMutablePointer<Float>?
) -> sp_status {
    randomizedSVDExport(w, m, n, rank, oversample, powerIters, seed, 0, u, s, vt)
}

@_cdecl("sp_randomized_svd_f64")
public func spRandomizedSVDF64(
    _ w: UnsafePointer<Double>?, _ m: Int64, _ n: Int64, _ rank: Int64, _ oversample: Int64, _ powerIters: Int64,
    _ seed: UInt64, _ u: UnsafeMutablePointer<Float>?, _ s: UnsafeMutablePointer<Float>?,
    _ vt: UnsafeMutablePointer<Float>?
) -> sp_status {
    randomizedSVDExport(w, m, n, rank, oversample, powerIters, seed, 0, u, s, vt)
}

@_cdecl("sp_randomized_svd_method_f32")
public func spRandomizedSVDMethodF32(
    _ w: UnsafePointer<Float>?, _ m: Int64, _ n: Int64, _ rank: Int64, _ oversample: Int64, _ powerIters: Int64,
    _ seed: UInt64, _ method: Int32, _ u: UnsafeMutablePointer<Float>?, _ s: UnsafeMutablePointer<Float>?,
    _ vt: UnsafeMutablePointer<Float>?
) -> sp_status {
    randomizedSVDExport(w, m, n, rank, oversample, powerIters, seed, method, u, s, vt)
}

@_cdecl("sp_randomized_svd_method_f64")
public func spRandomizedSVDMethodF64(
    _ w: UnsafePointer<Double>?, _ m: Int64, _ n: Int64, _ rank: Int64, _ oversample: Int64, _ powerIters: Int64,
    _ seed: UInt64, _ method: Int32, _ u: UnsafeMutablePointer<Float>?, _ s: UnsafeMutablePointer<Float>?,
    _ vt: UnsafeMutablePointer<Float>?
) -> sp_status {
    randomizedSVDExport(w, m, n, rank, oversample, powerIters, seed, method, u, s, vt)
}

/// The Swift selector for a C (selector, value) pair.
func rankSelector(_ selector: Int32, _ value: Double) throws -> RankSelector {
    switch selector {
    case SP_SELECT_RANK:
        guard value.isFinite, value.rounded() == value, abs(value) < 0x1p53 else {
            throw SwiftPruneError.value("rank must be an integer, got \(value)")
        }
        return .rank(Int(value))
    case SP_SELECT_ENERGY: return .energy(value)
    case SP_SELECT_RATIO: return .ratio(value)
    default: throw SwiftPruneError.value("unknown rank selector \(selector)")
    }
}

@_cdecl("sp_low_rank_max_rank")
public func spLowRankMaxRank(_ selector: Int32, _ value: Double, _ m: Int64, _ n: Int64,
                             _ rankOut: UnsafeMutablePointer<Int64>?) -> sp_status {
    withStatus {
        let (rows, cols, _) = try matrixShape(m, n, "w")
        guard let rankOut else { throw SwiftPruneError.value("rank_out is NULL") }
        rankOut.pointee = Int64(try rankSelector(selector, value).maximumRank(m: rows, n: cols))
    }
}

@inline(__always)
func lowRankExport<S: BinaryFloatingPoint>(
    _ w: UnsafePointer<S>?, _ m: Int64, _ n: Int64, _ selector: Int32, _ value: Double, _ method: Int32,
    _ seed: UInt64, _ capacity: Int64, _ a: UnsafeMutablePointer<Float>?, _ b: UnsafeMutablePointer<Float>?,
    _ rankOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        let (rows, cols, count) = try matrixShape(m, n, "w")
        guard let method = LowRankMethod(rawValue: method) else {
            throw SwiftPruneError.value("unknown low-rank method \(method)")
        }
        guard capacity >= 0 && capacity <= Int64(min(rows, cols)) else {
            throw SwiftPruneError.value("capacity must be in [0, \(min(rows, cols))], got \(capacity)")
        }
        guard let rankOut else { throw SwiftPruneError.value("rank_out is NULL") }
        let k = try lowRank(inputBuffer(w, count, "w"), m: rows, n: cols, selector: rankSelector(selector, value),
                            method: method, seed: seed,
                            a: outputBuffer(a, m * capacity, "a_out"), b: outputBuffer(b, capacity * n, "b_out"))
        rankOut.pointee = Int64(k)
    }
}

@_cdecl("sp_low_rank_f32")
public func spLowRankF32(
    _ w: UnsafePointer<Float>?, _ m: Int64, _ n: Int64, _ selector: Int32, _ value: Double, _ method: Int32,
    _ seed: UInt64, _ capacity: Int64, _ a: UnsafeMutablePointer<Float>?, _ b: UnsafeMutablePointer<Float>?,
    _ rankOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    lowRankExport(w, m, n, selector, value, method, seed, capacity, a, b, rankOut)
}

@_cdecl("sp_low_rank_f64")
public func spLowRankF64(
    _ w: UnsafePointer<Double>?, _ m: Int64, _ n: Int64, _ selector: Int32, _ value: Double, _ method: Int32,
    _ seed: UInt64, _ capacity: Int64, _ a: UnsafeMutablePointer<Float>?, _ b: UnsafeMutablePointer<Float>?,
    _ rankOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    lowRankExport(w, m, n, selector, value, method, seed, capacity, a, b, rankOut)
}

func checkFactorizationSignatures() {
    var svdF32 = sp_svd_f32; implements(&svdF32, spSVDF32)
    var svdF64 = sp_svd_f64; implements(&svdF64, spSVDF64)
    var rsvdF32 = sp_randomized_svd_f32; implements(&rsvdF32, spRandomizedSVDF32)
    var rsvdF64 = sp_randomized_svd_f64; implements(&rsvdF64, spRandomizedSVDF64)
    var rsvdMethodF32 = sp_randomized_svd_method_f32; implements(&rsvdMethodF32, spRandomizedSVDMethodF32)
    var rsvdMethodF64 = sp_randomized_svd_method_f64; implements(&rsvdMethodF64, spRandomizedSVDMethodF64)
    var maxRank = sp_low_rank_max_rank; implements(&maxRank, spLowRankMaxRank)
    var lowRankF32 = sp_low_rank_f32; implements(&lowRankF32, spLowRankF32)
    var lowRankF64 = sp_low_rank_f64; implements(&lowRankF64, spLowRankF64)
}
