/// Shape helpers shared by tensors and views.
public enum Shape {
    /// The number of elements of `shape`, checking that every dimension is
    /// non-negative and that the product does not overflow.
    public static func elementCount(_ shape: [Int]) throws -> Int {
        var count = 1
        for dim in shape {
            guard dim >= 0 else {
                throw SwiftPruneError.value("shape \(shape) has a negative dimension")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow else {
                throw SwiftPruneError(.outOfMemory, "shape \(shape) has too many elements")
            }
            count = product
        }
        return count
    }

    /// Resolves a possibly negative `axis` against `rank`, NumPy style.
    public static func normalizedAxis(_ axis: Int, rank: Int) throws -> Int {
        guard axis >= -rank && axis < rank else {
            throw SwiftPruneError.value("axis \(axis) is out of range for a tensor of rank \(rank)")
        }
        return axis < 0 ? axis + rank : axis
    }
}
