import XCTest
@testable import SwiftPrune

final class QuantizationTests: XCTestCase {
    func testSymmetricInt8ClosedForm() throws {
        let w = try Tensor<Float>(shape: [1, 4], scalars: [-1, 0, 0.5, 1])
        let q = try quantize(w, bits: 8)
        XCTAssertEqual(q.scales, [1 / 127])
        XCTAssertEqual(q.integers, [-127, 0, 64, 127])   // 63.5 rounds to even
        XCTAssertEqual(q.layout.scaleShape, [1, 1])
    }

    func testAffineWidensRangeToZero() throws {
        let q = try quantize(try Tensor<Float>(shape: [3], scalars: [1, 2, 3]), bits: 8, symmetric: false)
        XCTAssertEqual(q.zeroPoints, [0])
        XCTAssertEqual(q.scales, [Float(3.0 / 255)])
        XCTAssertEqual(q.integers, [85, 170, 255])
        let n = try quantize(try Tensor<Double>(shape: [2], scalars: [-2, -1]), bits: 4, symmetric: false)
        XCTAssertEqual(n.zeroPoints, [15])
        XCTAssertEqual(n.integers, [0, 8])
    }

    func testHalfToEvenRounding() throws {
        let w = try Tensor<Float>(shape: [7], scalars: [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
        XCTAssertEqual(try quantize(w, bits: 8).integers, [127, 0, 2, 2, 0, -2, -2])
    }

    func testLayoutsPerChannelAndGroups() throws {
        XCTAssertEqual(try QuantizationLayout(shape: [4, 6], axis: 0, groupSize: nil).scaleShape, [4, 1])
        XCTAssertEqual(try QuantizationLayout(shape: [4, 6], axis: -1, groupSize: nil).scaleShape, [1, 6])
        XCTAssertEqual(try QuantizationLayout(shape: [4, 6], axis: 0, groupSize: 3).scaleShape, [4, 2])
        XCTAssertEqual(try QuantizationLayout(shape: [4, 6], axis: 1, groupSize: 2).scaleShape, [2, 6])
        XCTAssertEqual(try QuantizationLayout(shape: [2, 3, 5], axis: 1, groupSize: nil).scaleShape, [1, 3, 1])
        XCTAssertThrowsError(try QuantizationLayout(shape: [4, 6], axis: 0, groupSize: 4))
        XCTAssertThrowsError(try QuantizationLayout(shape: [4, 6], axis: 2, groupSize: nil))
        XCTAssertThrowsError(try QuantizationLayout(shape: [4, 6], axis: nil, groupSize: 2))
        XCTAssertThrowsError(try QuantizationLayout(shape: [2, 2, 2], axis: 0, groupSize: 2))
    }

    func testGroupScalesAndDequantization() throws {
        // Rows [1, 2 | 4, 8] with groups of 2 along dimension 1.
        let w = try Tensor<Float>(shape: [2, 4], scalars: [1, 2, 4, 8, -1, 0, 0, 0])
        let q = try quantize(w, bits: 4, axis: 0, groupSize: 2)
        XCTAssertEqual(q.scales, [2 / 7, 8 / 7, 1 / 7, 1])   // the all-zero group gets scale 1
        let back = try q.dequantized()
        for (a, b) in zip(back.scalars, w.scalars) { XCTAssertEqual(a, b, accuracy: 0.6) }
        XCTAssertEqual(q.byteCount, 4 + 4 * 4)
    }

    func testMSENeverWorseThanMinmax() throws {
        var random = TestRandom(seed: 3)
        var values = (0 ..< 2000).map { _ in random.float(in: -1 ... 1) }
        values[7] = 20
        let w = try Tensor<Float>(shape: [2000], scalars: values)
        func error(_ q: QuantizedTensor) throws -> Double {
            zip(try q.dequantized().scalars, values).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        }
        let mse = try error(quantize(w, bits: 4, method: .mse))
        let minmax = try error(quantize(w, bits: 4))
        XCTAssertLessThan(mse, minmax)
    }

    func testBadInputThrows() throws {
        let w = try Tensor<Float>(shape: [2, 2], scalars: [1, .nan, 2, 3])
        XCTAssertThrowsError(try quantize(w, bits: 8)) { error in
            XCTAssertEqual((error as? SwiftPruneError)?.kind, .invalidValue)
        }
        let ok = try Tensor<Float>(shape: [2, 2], scalars: [1, 2, 3, 4])
        XCTAssertThrowsError(try quantize(ok, bits: 1))
        XCTAssertThrowsError(try quantize(ok, bits: 9))
        XCTAssertThrowsError(try quantize(ok, bits: 8, method: .percentile(101)))
        XCTAssertThrowsError(try quantize(try Tensor<Float>(shape: [1], scalars: [.infinity]), bits: 8, method: .mse))
    }

    /// Four-bit values: two per byte, low nibble first (what files of swiftprune <= 0.1.0 hold).
    func testFourBitPackingIsLowNibbleFirst() throws {
        let values: [UInt8] = [0x0F, 0x01, 0xF9, 0x07, 0x03]   // -1, 1, -7, 7, 3 as int4
        var packed = [UInt8](repeating: 0, count: 3)
        try values.withUnsafeBufferPointer { v in
            try packed.withUnsafeMutableBufferPointer { try BitPacking.pack(v, bits: 4, into: $0) }
        }
        XCTAssertEqual(packed, [0x1F, 0x79, 0x03])
        var back = [UInt8](repeating: 0, count: 5)
        try packed.withUnsafeBufferPointer { p in
            try back.withUnsafeMutableBufferPointer { try BitPacking.unpack(p, bits: 4, signed: true, into: $0) }
        }
        XCTAssertEqual(back.map { Int8(bitPattern: $0) }, [-1, 1, -7, 7, 3])
    }
}

final class HalfPrecisionCastTests: XCTestCase {
    func convert(_ values: [Float], bfloat: Bool) throws -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        try values.withUnsafeBufferPointer { x in
            try out.withUnsafeMutableBufferPointer {
                bfloat ? try HalfPrecisionCast.toBFloat16(x, into: $0) : try HalfPrecisionCast.toFloat16(x, into: $0)
            }
        }
        return out
    }

    func testFloat16SpecialValues() throws {
        XCTAssertEqual(try convert([1, -2, 65504, 65520, .infinity, 0x1p-24, 0x1p-25, 0x1.8p-24], bfloat: false),
                       [0x3C00, 0xC000, 0x7BFF, 0x7C00, 0x7C00, 0x0001, 0x0000, 0x0002])
        XCTAssertEqual(try convert([Float(bitPattern: 0x7F80_0001), .nan], bfloat: false), [0x7C01, 0x7E00])
    }

    func testBFloat16RoundsToEven() throws {
        XCTAssertEqual(try convert([1, Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), .nan, -.infinity],
                                   bfloat: true),
                       [0x3F80, 0x3F80, 0x3F82, 0x7FC0, 0xFF80])
        var out = [UInt16](repeating: 0, count: 1)
        let wide: [Double] = [1 + 0x1p-8 + 0x1p-30]   // above the midpoint: up, with one rounding
        try wide.withUnsafeBufferPointer { x in try out.withUnsafeMutableBufferPointer { try HalfPrecisionCast.toBFloat16(x, into: $0) } }
        XCTAssertEqual(out, [0x3F81])
    }
}

final class ClusteringTests: XCTestCase {
    func testTwoObviousClusters() throws {
        let w = try Tensor<Float>(shape: [6], scalars: [0.9, 1.1, 1.0, 5.0, 5.2, 4.8])
        let c = try ClusteredTensor(clustering: w, clusters: 2)
        XCTAssertEqual(c.centroids[0], 1.0, accuracy: 1e-6)
        XCTAssertEqual(c.centroids[1], 5.0, accuracy: 1e-6)
        XCTAssertEqual(c.indices, [0, 0, 0, 1, 1, 1])
    }

    func testFewDistinctValuesAreExact() throws {
        let w = try Tensor<Float>(shape: [4], scalars: [2, 1, 2, 1])
        let c = try ClusteredTensor(clustering: w, clusters: 4)
        XCTAssertEqual(try c.dequantized().scalars, w.scalars)
    }

    func testKMeansPlusPlusIsSeeded() throws {
        var random = TestRandom(seed: 9)
        let values = (0 ..< 5000).map { _ in random.float(in: -3 ... 3) }
        let a = try values.withUnsafeBufferPointer { try KMeans1D($0, clusters: 8, initialization: .kmeansPlusPlus, seed: 4) }
        let b = try values.withUnsafeBufferPointer { try KMeans1D($0, clusters: 8, initialization: .kmeansPlusPlus, seed: 4) }
        XCTAssertEqual(a.centroids, b.centroids)
        XCTAssertEqual(a.centroids, a.centroids.sorted())
    }

    func testBadInput() throws {
        let values: [Float] = [1, .nan]
        XCTAssertThrowsError(try values.withUnsafeBufferPointer { try KMeans1D($0, clusters: 2) })
        XCTAssertThrowsError(try [Float(1)].withUnsafeBufferPointer { try KMeans1D($0, clusters: 0) })
        var out = [Float](repeating: 0, count: 1)
        let bad: [UInt8] = [3]
        XCTAssertThrowsError(try bad.withUnsafeBufferPointer { i in
            try [Float(1), 2].withUnsafeBufferPointer { c in
                try out.withUnsafeMutableBufferPointer { try Codebook.lookup(i, centroids: c, into: $0) }
            }
        })
    }
}

final class GPTQTests: XCTestCase {
    func testUpperCholeskyOfInverse() throws {
        // H = [[4, 2], [2, 3]]: H⁻¹ = [[3, -2], [-2, 4]] / 8; U upper with UᵀU = H⁻¹.
        var reversed: [Double] = [3, 2, 2, 4]   // J H J
        try GPTQLinearAlgebra.cholesky(&reversed, n: 2)
        let inverse = try GPTQLinearAlgebra.invertLower(reversed, n: 2)
        let u = [inverse[3], inverse[2], 0, inverse[0]]
        let product = [u[0] * u[0], u[0] * u[1], u[1] * u[0], u[1] * u[1] + u[3] * u[3]]
        for (a, b) in zip(product, [3.0 / 8, -2.0 / 8, -2.0 / 8, 4.0 / 8]) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        var singular: [Double] = [1, 1, 1, 1]
        XCTAssertThrowsError(try GPTQLinearAlgebra.cholesky(&singular, n: 2))
    }

    func testGPTQOptionsAreBoundedAndFloatMatchesDouble() throws {
        var random = TestRandom(seed: 9)
        let rows = 6, cols = 16
        let w = (0 ..< rows * cols).map { _ in random.float(in: -1 ... 1) }
        var h = [Double](repeating: 0, count: cols * cols)
        for i in 0 ..< cols { h[i * cols + i] = 2; if i > 0 { h[i * cols + i - 1] = 0.5; h[(i - 1) * cols + i] = 0.5 } }
        let scheme = try QuantizationScheme(bits: 4, symmetric: true)
        var options = GPTQOptions()
        options.groupSize = 8
        options.blockSize = GPTQ.maximumBlockSize + 1
        try w.withUnsafeBufferPointer { wb in
            try h.withUnsafeBufferPointer { hb in
                XCTAssertThrowsError(try GPTQ.quantize(weights: wb, rows: rows, cols: cols, hessian: hb,
                                                       scheme: scheme, options: options))
                options.blockSize = 0
                XCTAssertThrowsError(try GPTQ.quantize(weights: wb, rows: rows, cols: cols, hessian: hb,
                                                       scheme: scheme, options: options))
                options.blockSize = 8
                let single = try GPTQ.quantize(weights: wb, rows: rows, cols: cols, hessian: hb, scheme: scheme, options: options)
                let wide = w.map(Double.init)
                var copy = h
                let double = try wide.withUnsafeBufferPointer { db in
                    try copy.withUnsafeMutableBufferPointer {
                        try GPTQ.quantize(weights: db, rows: rows, cols: cols, hessian: $0, scheme: scheme, options: options)
                    }
                }
                XCTAssertEqual(single.storage, double.storage)
                XCTAssertEqual(single.scales, double.scales)
            }
        }
    }

    func testGPTQBeatsRoundToNearestOnOutputs() throws {
        var random = TestRandom(seed: 5)
        let rows = 8, cols = 32, samples = 128
        let w = (0 ..< rows * cols).map { _ in Double(random.float(in: -1 ... 1)) }
        let base = (0 ..< samples * 4).map { _ in Double(random.float(in: -1 ... 1)) }
        // Correlated inputs: 32 features mixed from 4 sources plus a little noise.
        var x = [Double](repeating: 0, count: samples * cols)
        for s in 0 ..< samples {
            for f in 0 ..< cols { x[s * cols + f] = base[s * 4 + f % 4] * Double(f % 7 + 1) / 4 + 0.05 * Double(random.float(in: -1 ... 1)) }
        }
        let scheme = try QuantizationScheme(bits: 3, symmetric: true)
        let g = try w.withUnsafeBufferPointer { wb in
            try x.withUnsafeBufferPointer { xb in
                try GPTQ.quantize(weights: wb, rows: rows, cols: cols, activations: xb, samples: samples,
                                  scheme: scheme, groupSize: 16, damp: 0.01)
            }
        }
        let rtn = try quantize(try Tensor<Double>(shape: [rows, cols], scalars: w), bits: 3, axis: 0, groupSize: 16)
        func outputError(_ q: QuantizedTensor) throws -> Double {
            let d = try q.dequantized().scalars
            var total = 0.0
            for s in 0 ..< samples {
                for r in 0 ..< rows {
                    var e = 0.0
                    for c in 0 ..< cols { e += (w[r * cols + c] - Double(d[r * cols + c])) * x[s * cols + c] }
                    total += e * e
                }
            }
            return total
        }
        let gptqError = try outputError(g), roundingError = try outputError(rtn)
        XCTAssertLessThan(gptqError, 0.8 * roundingError)
    }
}

final class WideCodeDequantizationTests: XCTestCase {
    /// Codes wider than a byte (Swift callers only) on an output of 32 MiB and more, which is
    /// written with streaming stores 32 codes a step after a scalar head, then 8 a step and a
    /// scalar tail: rows of 4103 put every run start at every alignment, and a second output
    /// 4 bytes off a 32-byte boundary starts with the head. Every value must equal the formula
    /// `Float(Int32(truncatingIfNeeded: q) - zero) * scale` bit for bit, over codes of random bits
    /// (so 32-bit codes beyond 2^24 round, 64-bit codes are truncated, subtraction wraps).
    func testWideCodesEqualTheFormulaBitForBit() throws {
        try check(Int16.self)
        try check(UInt16.self)
        try check(Int32.self)
        try check(Int64.self)    // not specialized: the generic body
    }

    private func check<O: FixedWidthInteger & SIMDScalar>(_: O.Type) throws {
        let rows = 2048, cols = 4103
        XCTAssertGreaterThanOrEqual(rows * cols * 4, StreamingRuns.threshold)
        var random = TestRandom(seed: UInt64(MemoryLayout<O>.size) * 7 + (O.isSigned ? 1 : 0))
        let codes = (0 ..< rows * cols).map { _ in O(truncatingIfNeeded: random.next()) }
        let scales = (0 ..< rows).map { _ in random.float(in: 0.001 ... 2) }
        let zeros = (0 ..< rows).map { _ in Int32(truncatingIfNeeded: random.next()) >> Int32(random.next() % 32) }
        let layout = try QuantizationLayout(shape: [rows, cols], axis: 0, groupSize: nil)
        var backing = [Float](repeating: .nan, count: rows * cols + 8)
        try backing.withUnsafeMutableBufferPointer { all in
            let aligned = (8 - (Int(bitPattern: all.baseAddress!) & 31) / 4) % 8
            for offset in [aligned, (aligned + 1) % 8] {
                let out = UnsafeMutableBufferPointer(rebasing: all[offset ..< offset + rows * cols])
                try codes.withUnsafeBufferPointer { q in
                    try scales.withUnsafeBufferPointer { s in
                        try zeros.withUnsafeBufferPointer { z in
                            try dequantizeValues(q, layout: layout, scales: s, zeroPoints: z, into: out)
                        }
                    }
                }
                var mismatches = 0
                for r in 0 ..< rows {
                    for c in 0 ..< cols {
                        let want = Float(Int32(truncatingIfNeeded: codes[r * cols + c]) &- zeros[r]) * scales[r]
                        if out[r * cols + c].bitPattern != want.bitPattern { mismatches += 1 }
                    }
                }
                XCTAssertEqual(mismatches, 0, "\(O.self), output offset \(offset * 4) bytes")
            }
        }
    }
}

final class QuantizationTensorAPITests: XCTestCase {
    func testTensorLevelGPTQAndCasts() throws {
        var random = TestRandom(seed: 12)
        let w = try Tensor<Float>(shape: [4, 16], scalars: (0 ..< 64).map { _ in random.float(in: -1 ... 1) })
        let x = try Tensor<Float>(shape: [40, 16], scalars: (0 ..< 640).map { _ in random.float(in: -1 ... 1) })
        let q = try gptq(w, activations: x, bits: 4, groupSize: 8)
        XCTAssertEqual(q.layout.scaleShape, [4, 2])
        XCTAssertThrowsError(try gptq(w, activations: x, groupSize: 5))
        let h = try HalfPrecisionCast.float16(try Tensor<Double>(shape: [2], scalars: [1, -2]))
        XCTAssertEqual(h.scalars, [0x3C00, 0xC000])
        XCTAssertEqual(try HalfPrecisionCast.bfloat16(try Tensor<Float>(shape: [1], scalars: [1])).scalars, [0x3F80])
    }
}
