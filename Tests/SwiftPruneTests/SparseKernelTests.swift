import Testing
@testable import SwiftPrune


private func maxError(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Test(arguments: [(1, 1, 1), (3, 17, 1), (17, 3, 70), (33, 40, 17), (5, 8, 64), (9, 12, 100)])
func csrMatchesDense(shape: (Int, Int, Int)) throws {
    let (rows, columns, batch) = shape
    var w = pseudoRandomFloats(rows * columns, seed: 1)
    for i in w.indices where i % 3 != 0 { w[i] = 0 }
    let x = pseudoRandomFloats(columns * batch, seed: 2)
    let matrix = try Tensor(shape: [rows, columns], scalars: w).withView { try CSRMatrix(dense: $0) }
    #expect(matrix.nonzeroCount == w.filter { $0 != 0 }.count)
    #expect(try matrix.toDense().scalars == w)
    let y = try Tensor(shape: [columns, batch], scalars: x).withView { try matrix.matmul($0) }
    #expect(maxError(y.scalars, referenceMatmul(w, rows: rows, columns: columns, x, batch: batch)) < 1e-4)
}

@Test func csrRejectsBadInput() throws {
    #expect(throws: SwiftPruneError.self) {
        try Tensor(shape: [1, 2], scalars: [1, .nan]).withView { try CSRMatrix(dense: $0) }
    }
    #expect(throws: SwiftPruneError.self) {
        try CSRMatrix(rows: 1, columns: 2, rowOffsets: [0, 1], columnIndices: [2], values: [1])
    }
    #expect(throws: SwiftPruneError.self) {
        try CSRMatrix(rows: 2, columns: 2, rowOffsets: [0, 1, 0], columnIndices: [0], values: [1])
    }
    let matrix = try CSRMatrix(rows: 1, columns: 2, rowOffsets: [0, 1], columnIndices: [1], values: [3])
    #expect(throws: SwiftPruneError.self) {
        try Tensor(shape: [3, 1], scalars: [1, 2, 3]).withView { try matrix.matmul($0) }
    }
    #expect(try Tensor(shape: [2], scalars: [1, 2]).withView { try matrix.matmul($0) }.scalars == [6])
}

@Test(arguments: [(1, 4, 1), (3, 8, 17), (17, 12, 3), (6, 16, 64), (5, 4, 100)])
func nmMatchesDense(shape: (Int, Int, Int)) throws {
    let (rows, columns, batch) = shape
    let w = pseudoRandomFloats(rows * columns, seed: 3)
    let x = pseudoRandomFloats(columns * batch, seed: 4)
    let matrix = try Tensor(shape: [rows, columns], scalars: w).withView { try NMSparseMatrix(dense: $0, n: 2, m: 4) }
    // The reference pruning: keep the two largest |w| of every group of four.
    var pruned = w
    for group in 0 ..< rows * columns / 4 {
        let order = (0 ..< 4).sorted { abs(w[group * 4 + $0]) > abs(w[group * 4 + $1]) }
        for i in order.dropFirst(2) { pruned[group * 4 + i] = 0 }
    }
    #expect(try matrix.toDense().scalars == pruned)
    let y = try Tensor(shape: [columns, batch], scalars: x).withView { try matrix.matmul($0) }
    #expect(maxError(y.scalars, referenceMatmul(pruned, rows: rows, columns: columns, x, batch: batch)) < 1e-4)
}

@Test func nmWithNonPowerOfTwoGroups() throws {
    let (rows, columns, batch) = (4, 15, 9)
    let w = pseudoRandomFloats(rows * columns, seed: 8)
    let x = pseudoRandomFloats(columns * batch, seed: 9)
    let matrix = try Tensor(shape: [rows, columns], scalars: w).withView { try NMSparseMatrix(dense: $0, n: 3, m: 5) }
    let dense = try matrix.toDense().scalars
    for group in 0 ..< rows * columns / 5 {
        #expect((0 ..< 5).filter { dense[group * 5 + $0] != 0 }.count == 3)
    }
    let y = try Tensor(shape: [columns, batch], scalars: x).withView { try matrix.matmul($0) }
    #expect(maxError(y.scalars, referenceMatmul(dense, rows: rows, columns: columns, x, batch: batch)) < 1e-4)
}

@Test func nmRejectsBadLayout() {
    #expect(throws: SwiftPruneError.self) {
        try Tensor(shape: [2, 6], repeating: Float(1)).withView { try NMSparseMatrix(dense: $0, n: 2, m: 4) }
    }
    #expect(throws: SwiftPruneError.self) {
        try Tensor(shape: [2, 4], repeating: Float(1)).withView { try NMSparseMatrix(dense: $0, n: 5, m: 4) }
    }
}

@Test(arguments: [(1, 1, 1), (3, 17, 1), (17, 3, 70), (5, 1000, 17), (8, 64, 64), (3, 100, 1), (2, 70, 5), (6, 35, 20)])
func quantizedMatmulIsExactOnQuantizedActivations(shape: (Int, Int, Int)) throws {
    let (rows, columns, batch) = shape
    let values = pseudoRandomFloats(rows * columns, seed: 5).map { Int8(($0 * 127).rounded()) }
    let scale = pseudoRandomFloats(rows, seed: 6).map { abs($0) + 0.01 }
    let x = pseudoRandomFloats(columns * batch, seed: 7)
    var y = [Float](repeating: 0, count: rows * batch)
    try values.withUnsafeBufferPointer { v in
        try scale.withUnsafeBufferPointer { s in
            try x.withUnsafeBufferPointer { xb in
                try y.withUnsafeMutableBufferPointer { yb in
                    try QuantizedMatmul.matmul(values: v, rows: rows, columns: columns, scale: s,
                                               zeroPoint: UnsafeBufferPointer(start: nil, count: 0),
                                               x: xb, xRows: columns, batch: batch, y: yb)
                }
            }
        }
    }
    // Reference: quantize x per column as documented, then exact integer dot products.
    var reference = [Float](repeating: 0, count: rows * batch)
    for b in 0 ..< batch {
        var low: Float = 0, high: Float = 0
        for k in 0 ..< columns { low = min(low, x[k * batch + b]); high = max(high, x[k * batch + b]) }
        var s = (high - low) / 127
        if s == 0 { s = 1 }
        let z = min(max((-low / s).rounded(.toNearestOrEven), 0), 127)
        let xq = (0 ..< columns).map { Int64(min(max((x[$0 * batch + b] / s).rounded(.toNearestOrEven) + z, 0), 127)) - Int64(z) }
        for i in 0 ..< rows {
            var dot: Int64 = 0
            for k in 0 ..< columns { dot += Int64(values[i * columns + k]) * xq[k] }
            reference[i * batch + b] = Float(dot) * (scale[i] * s)
        }
    }
    #expect(maxError(y, reference) <= 1e-5 * (reference.map(abs).max() ?? 1))
}
