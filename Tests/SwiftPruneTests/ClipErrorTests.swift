import XCTest
@testable import SwiftPrune

/// The batched squared errors of the "mse" clipping search (the AVX2 kernel of
/// SwiftPruneClipError) against the one-candidate Swift evaluation
/// (`squaredError`), bit for bit.
final class ClipErrorTests: XCTestCase {
    /// The candidates bestClipping tries for a group: minmax, then clipping factors.
    func candidates(lo: Float, hi: Float, scheme: QuantizationScheme) -> [(Float, Int32)] {
        let alphas: [Double] = [1, 0.95, 0.8, 0.55, 0.3, 0.2, 0.155, 0.9, 0.855, 0.995]
        return alphas.map { scheme.parameters(lo: Float(Double(lo) * $0), hi: Float(Double(hi) * $0), as: Float.self) }
    }

    func batched(_ values: [Float], _ c: [(Float, Int32)], _ scheme: QuantizationScheme) -> [Double] {
        let lo = values.min()!, hi = values.max()!
        let bound = Swift.max(Swift.abs(Double(lo)), Swift.abs(Double(hi)))
        var errors = [Double](repeating: -1, count: c.count)
        let scales = c.map(\.0), zeroPoints = c.map(\.1)
        values.withUnsafeBufferPointer { v in
            errors.withUnsafeMutableBufferPointer { e in
                QuantizationCalibration.squaredErrors(v.baseAddress!, count: v.count, maxMagnitude: bound, scales: scales,
                                                      zeroPoints: zeroPoints, n: c.count, scheme: scheme,
                                                      into: e.baseAddress!)
            }
        }
        return errors
    }

    func single(_ values: [Float], _ c: (Float, Int32), _ scheme: QuantizationScheme) -> Double {
        values.withUnsafeBufferPointer {
            QuantizationCalibration.squaredError($0.baseAddress!, count: $0.count, scale: c.0, zeroPoint: c.1, scheme: scheme)
        }
    }

    func testBatchedErrorsEqualOneCandidateErrors() throws {
        var random = TestRandom(seed: 11)
        for count in [8, 13, 64, 128, 129, 1000] {
            for bits in [2, 3, 4, 8] {
                for symmetric in [true, false] {
                    let scheme = try QuantizationScheme(bits: bits, symmetric: symmetric)
                    let shift: Float = symmetric ? 0 : 0.3
                    var values = (0 ..< count).map { _ in random.float(in: -1 ... 1) + shift }
                    values[count / 2] = 9  // an outlier: clipped candidates clamp it
                    let c = candidates(lo: values.min()!, hi: values.max()!, scheme: scheme)
                    // Values whose quotient sits on or next to a rounding boundary (k + 0.5) of a
                    // candidate: a quotient off by one ulp would round the other way.
                    let (scale, zero) = c[2]
                    for i in stride(from: 1, to: count, by: 7) {
                        let k = Float(Int(i % 5) - 2 - Int(zero) % 3)
                        let edge = (k + 0.5) * scale
                        values[i] = [edge, edge.nextUp, edge.nextDown][i % 3]
                    }
                    let got = batched(values, c, scheme)
                    for (k, candidate) in c.enumerated() {
                        let want = single(values, candidate, scheme)
                        XCTAssertEqual(got[k].bitPattern, want.bitPattern,
                                       "count \(count) bits \(bits) symmetric \(symmetric) candidate \(k): \(got[k]) vs \(want)")
                    }
                }
            }
        }
    }

    #if arch(x86_64)
    func testDegenerateScalesTakeTheSwiftPath() throws {
        // Subnormal values: scales below 2^-64, which the kernel's exact quotient does not admit.
        XCTAssertFalse(QuantizationCalibration.kernelAdmits(scale: 1e-30, maxMagnitude: 1e-28))
        XCTAssertFalse(QuantizationCalibration.kernelAdmits(scale: 1, maxMagnitude: 0x1p101))
        XCTAssertTrue(QuantizationCalibration.kernelAdmits(scale: 0.01, maxMagnitude: 1))
        let scheme = try QuantizationScheme(bits: 4, symmetric: true)
        let values: [Float] = (0 ..< 24).map { Float($0 - 12) * Float.leastNonzeroMagnitude * 3 }
        let c = candidates(lo: values.min()!, hi: values.max()!, scheme: scheme)
        let got = batched(values, c, scheme)
        for (k, candidate) in c.enumerated() { XCTAssertEqual(got[k].bitPattern, single(values, candidate, scheme).bitPattern) }
    }
    #endif

    func testDivisionFreeQuotientMatchesDivision() {
        // The kernel's arithmetic in scalar form: q0 = RN(x·y), y = RN(1/s), then one FMA
        // correction (Markstein). benchmarks/exact_quotient.c checks every significand.
        var random = TestRandom(seed: 5)
        for _ in 0 ..< 64 {
            let s = random.float(in: 0.001 ... 2) * Float(sign: .plus, exponent: Int(random.next() % 40) - 20, significand: 1)
            let y = 1 / s
            for _ in 0 ..< 4096 {
                let x = random.float(in: -300 ... 300) * s
                let q0 = x * y
                let q = q0.addingProduct(x.addingProduct(-q0, s), y)
                XCTAssertEqual(q.bitPattern, (x / s).bitPattern)
            }
        }
    }

    func testSearchedRangeEqualsTheScalarScan() throws {
        // GPTQ's mse=True search (SearchedRange): the kernel path against the scalar errors, scanned alike.
        var random = TestRandom(seed: 17)
        for (bits, symmetric, count) in [(4, true, 128), (4, false, 128), (3, false, 37), (8, true, 64), (2, true, 200)] {
            let scheme = try QuantizationScheme(bits: bits, symmetric: symmetric)
            let search = SearchedRange(scheme: scheme, grid: 100, maxShrink: 0.8)
            for trial in 0 ..< 40 {
                var x = (0 ..< count).map { _ in random.float(in: -1 ... 1) * (trial % 2 == 0 ? 1 : 0.01) }
                x[trial % count] *= 8
                // Values on the rounding boundaries of one shrink's grid.
                let lo = Double(Swift.min(x.min()!, 0)), hi = Double(Swift.max(x.max()!, 0))
                let p = 1 - Double(trial % 80) / 100
                let c = scheme.parameters(lo: p * lo, hi: p * hi, as: Double.self)
                for i in stride(from: 3, to: count, by: 11) {
                    let edge = (Float(i % 7) - 3.5) * c.scale
                    x[i] = [edge, edge.nextUp, edge.nextDown][i % 3]
                }
                let got = x.withUnsafeBufferPointer { search.parameters($0.baseAddress!, count) }
                // The scalar scan: minmax, then the shrinks, first strictly smaller error wins.
                let lo2 = Double(Swift.min(x.min()!, 0)), hi2 = Double(Swift.max(x.max()!, 0))
                var best = scheme.parameters(lo: lo2, hi: hi2, as: Double.self)
                var bestError = x.withUnsafeBufferPointer { search.error($0.baseAddress!, count, best) }
                for k in 1 ..< 80 {
                    let q = 1 - Double(k) / 100
                    let candidate = scheme.parameters(lo: q * lo2, hi: q * hi2, as: Double.self)
                    let e = x.withUnsafeBufferPointer { search.error($0.baseAddress!, count, candidate) }
                    if e < bestError { (best, bestError) = (candidate, e) }
                }
                XCTAssertEqual(got.scale, best.scale, "bits \(bits) symmetric \(symmetric) trial \(trial)")
                XCTAssertEqual(got.zeroPoint, best.zeroPoint)
            }
        }
    }
}
