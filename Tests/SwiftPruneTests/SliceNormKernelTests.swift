import Testing
@testable import SwiftPrune

/// The float32 slice-norm kernels of issue 18 (round 10): rows read as four streams
/// (FloatRowStreams) and column-norm planes added eight per pass (accumulateFloatPlanes).
@Suite struct SliceNormKernelTests {
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var generator = Xoshiro256StarStar(seed: seed)
        return (0 ..< count).map { _ in Float(Int(generator.uniform(below: 2001))) / 500 - 2 }
    }

    @Test(arguments: [1, 3, 4, 5, 8, 13, 67], [1, 31, 32, 33, 64, 100, 2565])
    func fourStreamRowsAreBitIdenticalToOneRowAtATime(rows: Int, length: Int) {
        let data = Self.values(rows * length, seed: UInt64(rows * 10_000 + length))
        var streamed = [Double](repeating: -1, count: rows)
        data.withUnsafeBufferPointer { p in
            streamed.withUnsafeMutableBufferPointer { FloatRowStreams.squaredNorms(p.baseAddress!, rows: rows, length: length, into: $0.baseAddress!) }
            for r in 0 ..< rows {
                // Equivalence with the one-row kernel (same lanes, same order) ...
                let single = reduceRow(p.baseAddress! + r * length, length, .l2)
                #expect(streamed[r].bitPattern == single.bitPattern, "row \(r) of \(rows) x \(length)")
                // ... and closeness to the float64 sum of squares.
                let exact = p[r * length ..< (r + 1) * length].reduce(0.0) { $0 + Double($1) * Double($1) }
                #expect(abs(streamed[r] - exact) <= 1e-5 * max(exact, 1e-30))
            }
        }
    }

    @Test(arguments: [1, 3, 4, 7, 8, 9, 12, 15, 16, 17, 37], [1, 7, 8, 9, 33])
    func eightPlanePassesAreBitIdenticalToThePlainLoop(rows: Int, plane: Int) {
        let data = Self.values(rows * plane, seed: UInt64(rows * 100 + plane))
        for l1 in [false, true] {
            var blocked = [Double](repeating: 0.25, count: plane), plain = blocked
            data.withUnsafeBufferPointer { p in
                blocked.withUnsafeMutableBufferPointer {
                    accumulateFloatPlanes(p.baseAddress!, rows: rows, plane: plane, l1: l1, into: $0.baseAddress!)
                }
                // The documented meaning: acc[j] += f(p[r * plane + j]) for r in order.
                for r in 0 ..< rows {
                    for j in 0 ..< plane {
                        let x = Double(p[r * plane + j])
                        plain[j] += l1 ? x.magnitude : x * x
                    }
                }
            }
            #expect(blocked.map(\.bitPattern) == plain.map(\.bitPattern), "\(rows) x \(plane), l1 \(l1)")
        }
    }

    @Test func longRowsOfSeveralPlanesAddInRowOrder() throws {
        // Shape (3, 4099, 70) along axis 1: rows of 70 (the long-row branch) and outer 3, so each norm adds
        // three rows; 12297 rows span several 4096-row chunks. Against the float64 formula.
        let shape = [3, 4099, 70]
        let data = Self.values(shape.reduce(1, *), seed: 7)
        let w = try Tensor<Float>(shape: shape, scalars: data)
        let norms = try w.withView { try sliceNorms($0, axis: 1, norm: .l2) }
        for l in [0, 1, 2047, 4095, 4096, 4098] {
            var exact = 0.0
            for o in 0 ..< 3 { for i in 0 ..< 70 { let x = Double(data[(o * 4099 + l) * 70 + i]); exact += x * x } }
            #expect(abs(norms[l] - exact.squareRoot()) <= 1e-6 * exact.squareRoot())
        }
    }

    @Test(arguments: [SliceNorm.l1, .l2, .infinity])
    func longRowsOfSeveralPlanesAreTheSameBitsAtEveryWorkerCount(norm: SliceNorm) throws {
        // Shape (3, 4099, 300) along axis 1: 14.8 MB of float32 (above the 12 MiB from which the call
        // uses two workers), rows of 300 (the long-row branch), each norm adding three rows of different
        // planes. At 1 to 4 workers the norms must be the same bits, and equal the rows' own sums
        // (reduceRow, tested above against the float64 formula) added in row order.
        let shape = [3, 4099, 300], length = 4099, inner = 300
        let data = Self.values(shape.reduce(1, *), seed: 11)
        let w = try Tensor<Float>(shape: shape, scalars: data)
        defer { try? Threading.setThreadCount(0) }
        var perCount: [[UInt64]] = []
        for count in 1 ... 4 {
            try Threading.setThreadCount(count)
            perCount.append(try w.withView { try sliceNorms($0, axis: 1, norm: norm) }.map(\.bitPattern))
        }
        var rowOrder = [Double](repeating: 0, count: length)
        data.withUnsafeBufferPointer { p in
            for row in 0 ..< 3 * length {
                let value = reduceRow(p.baseAddress! + row * inner, inner, norm)
                rowOrder[row % length] = norm == .infinity ? max(rowOrder[row % length], value) : rowOrder[row % length] + value
            }
        }
        if norm == .l2 { rowOrder = rowOrder.map { $0.squareRoot() } }
        for count in 2 ... 4 { #expect(perCount[count - 1] == perCount[0], "\(count) workers vs 1, \(norm)") }
        #expect(perCount[0] == rowOrder.map(\.bitPattern), "\(norm)")
    }
}
