/// Magnitude masks that follow a ``PruningSchedule`` across training steps
/// and only ever grow in what they prune.
///
/// Call ``step(_:weights:)`` once per training step with the current
/// weights; when the schedule says so, the masks are recomputed at
/// `schedule.sparsity(at: step)` from the magnitudes of the entries still
/// kept: a pruned entry stays pruned, and when the schedule asks for less
/// sparsity than already reached the masks are left as they are.
public struct GradualPruner<Schedule: PruningSchedule> {
    /// How the target sparsity is reached.
    public enum Method: Sendable {
        /// Each tensor pruned to the target sparsity.
        case magnitude
        /// One magnitude threshold over all tensors together.
        case globalMagnitude
    }

    public let schedule: Schedule
    public let method: Method
    /// The current keep-masks, one per tensor (all `true` at first).
    public private(set) var masks: [Tensor<Bool>]
    /// The last step at which the masks were updated.
    public private(set) var lastUpdateStep: Int?

    /// Masks for tensors of `shapes`.
    public init(shapes: [[Int]], schedule: Schedule, method: Method = .magnitude) throws {
        self.schedule = schedule
        self.method = method
        self.masks = try shapes.map { try Tensor<Bool>(shape: $0, repeating: true) }
    }

    /// Updates the masks if the schedule prunes at `step`, and returns them.
    /// - Throws: ``SwiftPruneError`` if `weights` do not match the shapes, or hold NaN/Inf.
    @discardableResult
    public mutating func step<S: MagnitudeOrdered>(_ step: Int, weights: [Tensor<S>]) throws -> [Tensor<Bool>] {
        guard weights.count == masks.count else {
            throw SwiftPruneError.value("expected \(masks.count) weight tensors, got \(weights.count)")
        }
        for (index, (w, mask)) in zip(weights, masks).enumerated() where w.shape != mask.shape {
            throw SwiftPruneError.value("weights[\(index)] has shape \(w.shape), expected \(mask.shape)")
        }
        guard schedule.shouldPrune(at: step) else { return masks }
        let target = schedule.sparsity(at: step)
        switch method {
        case .magnitude:
            for index in masks.indices {
                masks[index] = try Self.grow([masks[index]], [weights[index]], target: target)[0]
            }
        case .globalMagnitude:
            masks = try Self.grow(masks, weights, target: target)
        }
        lastUpdateStep = step
        return masks
    }

    /// Prunes, among the entries `masks` keep, the smallest magnitudes needed
    /// to reach `target` of all entries (globally over the given tensors).
    static func grow<S: MagnitudeOrdered>(_ masks: [Tensor<Bool>], _ weights: [Tensor<S>], target: Double) throws -> [Tensor<Bool>] {
        let total = masks.reduce(0) { $0 + $1.count }
        let kept = masks.reduce(0) { $0 + $1.scalars.filter { $0 }.count }
        let extra = max(0, min(kept, try prunedCount(sparsity: target, of: total) - (total - kept)))
        // NaN/Inf are rejected even when nothing more is pruned.
        let survivors = zip(weights, masks).map { w, mask in
            Tensor(zip(w.scalars, mask.scalars).compactMap { $1 ? $0 : nil })
        }
        let subMasks = try globalMagnitudeMasks(survivors, sparsity: kept == 0 ? 0 : Double(extra) / Double(kept))
        guard extra > 0 else { return masks }
        return try zip(masks, subMasks).map { mask, sub in
            var next = sub.scalars.makeIterator()
            return try Tensor(shape: mask.shape, scalars: mask.scalars.map { $0 ? (next.next() ?? true) : false })
        }
    }
}
