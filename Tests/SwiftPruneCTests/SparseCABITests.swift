import CSwiftPrune
import SwiftPruneC
import Testing

@Test func csrCountReportsNonzerosThroughTheCABI() {
    let dense: [Float] = [0, 1, 0, 2, 0, 3]
    var offsets = [Int64](repeating: -1, count: 3)
    var nonzeros: Int64 = -1
    let status = sp_csr_count_f32(dense, 2, 3, &offsets, &nonzeros)
    #expect(status == SP_OK)
    #expect(nonzeros == 3)
    #expect(offsets == [0, 1, 3])
}

@Test func sparseExportsReportStatusesInsteadOfTrapping() {
    var y = [Float](repeating: 0, count: 4)
    let x: [Float] = [1, 2, 3, 4]
    // A column index out of range.
    let indptr: [Int64] = [0, 1]
    let indices: [Int32] = [5]
    let data: [Float] = [1]
    #expect(sp_csr_matmul_f32(1, 2, indptr, indices, data, 1, x, 2, 2, &y) == SP_ERR_VALUE)
    // x rows do not match the columns.
    #expect(sp_csr_matmul_f32(1, 2, indptr, [0], data, 1, x, 4, 1, &y) == SP_ERR_VALUE)
    // NULL where elements are expected, negative sizes.
    #expect(sp_csr_matmul_f32(1, 2, nil, indices, data, 1, x, 2, 2, &y) == SP_ERR_VALUE)
    #expect(sp_nm_matmul_f32(-1, 4, 2, 4, nil, nil, x, 4, 1, &y) == SP_ERR_VALUE)
    // An N:M group index >= m.
    let values: [Float] = [1, 1]
    let groupIndices: [UInt8] = [0, 7]
    #expect(sp_nm_matmul_f32(1, 4, 2, 4, values, groupIndices, x, 4, 1, &y) == SP_ERR_VALUE)
    // int8: NaN activations.
    let weights: [Int8] = [1, 2]
    let scale: [Float] = [1]
    let bad: [Float] = [.nan, 1]
    #expect(sp_quantized_matmul_i8(weights, 1, 2, scale, nil, bad, 2, 1, &y) == SP_ERR_VALUE)
    #expect(sp_quantized_matmul_i8(weights, 1, 2, scale, nil, [2, 1], 2, 1, &y) == SP_OK)
    #expect(abs(y[0] - 4) < 0.05)
}

@Test func nmValueCountIsTheCompressedArraysLength() {
    var count: Int64 = -1
    #expect(sp_nm_value_count(3, 8, 2, 4, &count) == SP_OK)
    #expect(count == 12)  // 3 rows of 2 groups of 4, two values kept in each
    #expect(sp_nm_value_count(5, 40, 3, 5, &count) == SP_OK)
    #expect(count == 5 * 8 * 3)
    #expect(sp_nm_value_count(0, 8, 2, 4, &count) == SP_OK)
    #expect(count == 0)
    // Statuses, not traps: bad layouts, a NULL out-pointer, an overflowing shape.
    #expect(sp_nm_value_count(3, 6, 2, 4, &count) == SP_ERR_VALUE)
    #expect(sp_nm_value_count(3, 8, 5, 4, &count) == SP_ERR_VALUE)
    #expect(sp_nm_value_count(-1, 8, 2, 4, &count) == SP_ERR_VALUE)
    #expect(sp_nm_value_count(3, 8, 2, 4, nil) == SP_ERR_VALUE)
    #expect(sp_nm_value_count(Int64.max, 8, 2, 4, &count) == SP_ERR_MEMORY)
}

@Test func nmPackedLayoutProductMatchesTheRowMajorKernel() {
    // 3 rows of 2:4 over 8 columns, x of 8 columns (the packed product's smallest tile).
    let values: [Float] = [1, 2, 3, 4, -1, 0.5, 2, -3, 0.25, 8, -2, 1]
    let groupIndices: [UInt8] = [0, 1, 2, 3, 1, 3, 0, 2, 0, 3, 1, 2]
    let x: [Float] = (0 ..< 64).map { Float($0 % 7) - 3 }
    var bytes: Int64 = -1
    #expect(sp_nm_packed_bytes(3, 8, 2, 4, &bytes) == SP_OK)
    #expect(bytes == 3 * 4 * 5)  // one block: 4 values + 4 indices per row
    var packed = [UInt8](repeating: 0xFF, count: Int(bytes))
    #expect(sp_nm_pack(3, 8, 2, 4, values, groupIndices, &packed, bytes) == SP_OK)
    // Row 0's record: its four float32 values, then its four indices.
    #expect(Array(packed[16 ..< 20]) == [0, 1, 2, 3])
    var rowMajor = [Float](repeating: 0, count: 24), fromPacked = [Float](repeating: -1, count: 24)
    #expect(sp_nm_matmul_f32(3, 8, 2, 4, values, groupIndices, x, 8, 8, &rowMajor) == SP_OK)
    #expect(sp_nm_packed_matmul_f32(3, 8, 2, 4, packed, bytes, x, 8, 8, &fromPacked) == SP_OK)
    #expect(fromPacked == rowMajor)
    // Statuses, not traps: a wrong size, NULL, an index >= m, x of the wrong height.
    #expect(sp_nm_packed_matmul_f32(3, 8, 2, 4, packed, bytes - 4, x, 8, 8, &fromPacked) == SP_ERR_VALUE)
    #expect(sp_nm_packed_matmul_f32(3, 8, 2, 4, nil, bytes, x, 8, 8, &fromPacked) == SP_ERR_VALUE)
    #expect(sp_nm_packed_bytes(3, 6, 2, 4, &bytes) == SP_ERR_VALUE)
    var corrupt = packed
    corrupt[16] = 4
    #expect(sp_nm_packed_matmul_f32(3, 8, 2, 4, corrupt, Int64(corrupt.count), x, 8, 8, &fromPacked) == SP_ERR_VALUE)
    #expect(sp_nm_packed_matmul_f32(3, 8, 2, 4, packed, Int64(packed.count), x, 4, 16, &fromPacked) == SP_ERR_VALUE)
    #expect(sp_nm_pack(3, 8, 2, 4, values, [UInt8](repeating: 4, count: 12), &packed, Int64(packed.count)) == SP_ERR_VALUE)
}
