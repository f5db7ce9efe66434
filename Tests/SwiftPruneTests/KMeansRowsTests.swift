import XCTest
@testable import SwiftPrune

final class KMeansRowsTests: XCTestCase {
    /// Every row equals one unbatched KMeans1D + Codebook.assign, for 1 and several workers.
    func testRowsMatchOneKMeansPerRow() throws {
        var random = TestRandom(seed: 21)
        let rows = 37, length = 1500, k = 6
        let values = (0 ..< rows * length).map { _ in random.float(in: -2 ... 2) }
        for threads in [1, 2, 4] {
            try Threading.setThreadCount(threads)
            defer { try? Threading.setThreadCount(0) }
            var centroids = [Float](repeating: 0, count: rows * k)
            var indices = [UInt8](repeating: 0, count: rows * length)
            _ = try values.withUnsafeBufferPointer { x in
                try centroids.withUnsafeMutableBufferPointer { c in
                    try indices.withUnsafeMutableBufferPointer { i in
                        try KMeans1D.fitRows(x, rows: rows, rowLength: length, clusters: k, centroids: c, indices: i)
                    }
                }
            }
            for r in 0 ..< rows {
                let row = Array(values[r * length ..< (r + 1) * length])
                let single = try row.withUnsafeBufferPointer { try KMeans1D($0, clusters: k) }
                XCTAssertEqual(Array(centroids[r * k ..< (r + 1) * k]), single.centroids)
                var expected = [UInt8](repeating: 0, count: length)
                try row.withUnsafeBufferPointer { x in
                    try single.centroids.withUnsafeBufferPointer { c in
                        try expected.withUnsafeMutableBufferPointer { try Codebook.assign(x, centroids: c, into: $0) }
                    }
                }
                XCTAssertEqual(Array(indices[r * length ..< (r + 1) * length]), expected)
            }
        }
    }

    func testBadInputThrowsInsteadOfTrapping() throws {
        var centroids = [Float](repeating: 0, count: 4)
        var indices = [UInt8](repeating: 0, count: 4)
        let bad: [Float] = [1, 2, .nan, 3]
        XCTAssertThrowsError(try bad.withUnsafeBufferPointer { x in
            try centroids.withUnsafeMutableBufferPointer { c in
                try indices.withUnsafeMutableBufferPointer { i in
                    try KMeans1D.fitRows(x, rows: 2, rowLength: 2, clusters: 2, centroids: c, indices: i)
                }
            }
        })
        XCTAssertThrowsError(try [Float](repeating: 1, count: 4).withUnsafeBufferPointer { x in
            try centroids.withUnsafeMutableBufferPointer { c in
                try indices.withUnsafeMutableBufferPointer { i in   // 300 clusters do not fit UInt8 indices
                    try KMeans1D.fitRows(x, rows: 1, rowLength: 4, clusters: 300, centroids: c, indices: i)
                }
            }
        })
        XCTAssertThrowsError(try [Float](repeating: 1, count: 3).withUnsafeBufferPointer { x in
            try centroids.withUnsafeMutableBufferPointer { c in
                try indices.withUnsafeMutableBufferPointer { i in   // sizes do not match
                    try KMeans1D.fitRows(x, rows: 2, rowLength: 2, clusters: 2, centroids: c, indices: i)
                }
            }
        })
    }
}
