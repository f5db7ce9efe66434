/// Which elements share a scale: the tensor is viewed as `[outer, groupsAlong,
/// run, inner]` (C order) and element `(a, b, c, d)` belongs to group
/// `b * inner + d`. Every granularity of ``quantize`` maps onto this:
///
/// | granularity                      | outer | groupsAlong | run | inner |
/// | -------------------------------- | ----- | ----------- | --- | ----- |
/// | per tensor                       | 1     | 1           | n   | 1     |
/// | per channel, axis `a`            | prod(shape[..<a]) | shape[a] | prod(shape[(a+1)...]) | 1 |
/// | per channel, last axis           | 1     | 1           | prod(shape[..<a]) | shape[a] |
/// | groups of g, 2-D, axis 0         | 1     | R·C/g       | g   | 1     |
/// | groups of g, 2-D, axis 1         | 1     | R/g         | g   | C     |
public struct QuantizationLayout: Equatable, Sendable {
    public let shape: [Int]
    /// The normalized channel axis, or nil for one scale per tensor.
    public let axis: Int?
    public let groupSize: Int?
    public let outer: Int, groupsAlong: Int, run: Int, inner: Int
    /// The shape of the scale and zero-point arrays: the tensor's rank, with 1
    /// where one scale covers the whole dimension, `shape[axis]` along the
    /// channel axis and `shape[d] / groupSize` along the grouped dimension.
    public let scaleShape: [Int]

    /// - Throws: ``SwiftPruneError`` for an axis out of range, a group size
    ///   without an axis, on a tensor that is not 2-D, below 1 or not dividing
    ///   the grouped dimension.
    public init(shape: [Int], axis: Int?, groupSize: Int?) throws {
        let count = try Shape.elementCount(shape)
        self.shape = shape
        self.groupSize = groupSize
        guard let rawAxis = axis else {
            guard groupSize == nil else {
                throw SwiftPruneError.value("group_size needs an axis (the channel axis of a 2-D weight)")
            }
            self.axis = nil
            (outer, groupsAlong, run, inner) = (1, 1, count, 1)
            scaleShape = [Int](repeating: 1, count: shape.count)
            return
        }
        let a = try Shape.normalizedAxis(rawAxis, rank: shape.count)
        self.axis = a
        if let g = groupSize {
            guard shape.count == 2 else {
                throw SwiftPruneError.value("group_size needs a 2-D weight, got shape \(shape)")
            }
            guard g >= 1 else { throw SwiftPruneError.value("group_size must be >= 1, got \(g)") }
            let other = 1 - a
            guard shape[other] % g == 0 else {
                throw SwiftPruneError.value(
                    "group_size \(g) does not divide dimension \(other) of shape \(shape) (size \(shape[other]))")
            }
            let (rows, cols) = (shape[0], shape[1])
            if a == 0 {
                (outer, groupsAlong, run, inner) = (1, rows * (cols / g), g, 1)
                scaleShape = [rows, cols / g]
            } else {
                (outer, groupsAlong, run, inner) = (1, rows / g, g, cols)
                scaleShape = [rows / g, cols]
            }
            return
        }
        let before = shape[..<a].reduce(1, *), after = shape[(a + 1)...].reduce(1, *)
        if after == 1 {
            (outer, groupsAlong, run, inner) = (1, 1, before, shape[a])
        } else {
            (outer, groupsAlong, run, inner) = (before, shape[a], after, 1)
        }
        var scaleShape = [Int](repeating: 1, count: shape.count)
        scaleShape[a] = shape[a]
        self.scaleShape = scaleShape
    }

    /// The number of groups (scales).
    public var groupCount: Int { groupsAlong * inner }
    /// The number of elements in each group.
    public var groupLength: Int { outer * run }
    /// The number of elements.
    public var count: Int { outer * groupsAlong * run * inner }
}
