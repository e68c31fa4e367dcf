import Foundation
import GantryHTTP

/// Charts drawn by the server as inline SVG: no script, no stylesheet of their own (colours come
/// from the console's stylesheet through class names), so the page's policy needs nothing more.
enum SVGChart {
    /// A line over `values` (nil: no data that minute, a gap in the line), scaled from 0 to the
    /// largest value (or `ceiling` where the quantity has one, like a utilisation of 1), with the
    /// title, the latest value and the peak as text.
    static func sparkline(
        title: String, values: [Double?], ceiling: Double? = nil, format: (Double) -> String, id: String? = nil,
        width: Int = 240, height: Int = 56
    ) -> String {
        let present = values.compactMap { $0 }
        let top = max(ceiling ?? 0, present.max() ?? 0, 1e-9)
        let step = values.count > 1 ? Double(width) / Double(values.count - 1) : 0
        // Runs of consecutive values become one polyline each.
        var runs: [[String]] = []
        var current: [String] = []
        for (index, value) in values.enumerated() {
            guard let value else {
                if !current.isEmpty { runs.append(current) }
                current = []
                continue
            }
            let x = Double(index) * step
            let y = Double(height) - (value / top) * Double(height - 4) - 2
            current.append(String(format: "%.1f,%.1f", x, y))
        }
        if !current.isEmpty { runs.append(current) }
        let lines = runs.map { run in
            run.count == 1
                ? "<circle cx=\"\(run[0].split(separator: ",")[0])\" cy=\"\(run[0].split(separator: ",")[1])\" r=\"1.5\"/>"
                : "<polyline points=\"\(run.joined(separator: " "))\"/>"
        }.joined()
        let latest = values.last.flatMap { $0 }.map(format) ?? "–"
        let peak = present.max().map(format) ?? "–"
        let label = "\(title): now \(latest), peak \(peak) over the last \(values.count) minutes"
        let idAttribute = id.map { " id=\"\(HTML.escape($0))\"" } ?? ""
        return """
            <figure class="chart"\(idAttribute)><figcaption>\(HTML.escape(title)) <strong>\(HTML.escape(latest))</strong>\
            <small>peak \(HTML.escape(peak))</small></figcaption>\
            <svg viewBox="0 0 \(width) \(height)" preserveAspectRatio="none" role="img" aria-label="\(HTML.escape(label))">\
            <line class="axis" x1="0" y1="\(height - 1)" x2="\(width)" y2="\(height - 1)"/>\(lines)</svg></figure>
            """
    }

    /// A horizontal bar for a share (memory held, utilisation): the filled part is `fraction`.
    static func bar(fraction: Double, label: String, width: Int = 120, height: Int = 10) -> String {
        let clamped = min(max(fraction.isFinite ? fraction : 0, 0), 1)
        let filled = String(format: "%.1f", clamped * Double(width))
        return """
            <svg class="bar" viewBox="0 0 \(width) \(height)" width="\(width)" height="\(height)" role="img" \
            aria-label="\(HTML.escape(label))"><rect class="bar-track" width="\(width)" height="\(height)" rx="2"/>\
            <rect class="bar-fill" width="\(filled)" height="\(height)" rx="2"/></svg>
            """
    }

    /// Vertical bars, one per labelled value (usage per day), scaled to the largest.
    static func bars(title: String, values: [(label: String, value: Double)], format: (Double) -> String, id: String? = nil)
        -> String
    {
        let width = 480
        let height = 120
        let top = max(values.map(\.value).max() ?? 0, 1e-9)
        let slot = values.isEmpty ? 0 : Double(width) / Double(values.count)
        let rects = values.enumerated().map { index, item in
            let barHeight = item.value / top * Double(height - 16)
            let box = String(
                format: "x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"",
                Double(index) * slot + slot * 0.1, Double(height - 14) - barHeight, slot * 0.8, barHeight)
            return "<rect \(box)><title>\(HTML.escape("\(item.label): \(format(item.value))"))</title></rect>"
        }.joined()
        let idAttribute = id.map { " id=\"\(HTML.escape($0))\"" } ?? ""
        let summary = values.map { "\($0.label) \(format($0.value))" }.joined(separator: ", ")
        return """
            <figure class="chart bars"\(idAttribute)><figcaption>\(HTML.escape(title))</figcaption>\
            <svg viewBox="0 0 \(width) \(height)" role="img" aria-label="\(HTML.escape(title + ": " + summary))">\
            \(rects)</svg></figure>
            """
    }
}
