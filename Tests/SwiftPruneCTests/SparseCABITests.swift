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
