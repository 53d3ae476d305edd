import { useMemo } from "react";

import { metricLabel, metricValue } from "../model/format.js";
import { numericSeries } from "../model/readings.js";
import type { Reading } from "../model/validate.js";
import { MetricChart } from "./MetricChart.js";

const COLORS = ["#4c8dff", "#2fbf71", "#f0a020", "#c678dd", "#56b6c2", "#e5484d"];

/** Small multiples: one chart per numeric metric of the readings. */
export function TelemetryCharts({ readings }: { readings: readonly Reading[] }) {
  const series = useMemo(() => numericSeries(readings), [readings]);
  if (series.keys.length === 0) return <p className="placeholder">No numeric readings yet.</p>;
  return (
    <div className="charts">
      {series.keys.map((key, i) => {
        const y = series.ys[i]!;
        const latest = [...y].reverse().find((v) => v !== null);
        return (
          <figure className="chart" key={key} data-metric={key}>
            <figcaption className="chart__head">
              <span className="chart__label">{metricLabel(key)}</span>
              <span className="chart__value">{latest === undefined ? "—" : metricValue(latest)}</span>
            </figcaption>
            <MetricChart label={metricLabel(key)} x={series.x} y={y} color={COLORS[i % COLORS.length]!} />
          </figure>
        );
      })}
    </div>
  );
}
