import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const HEIGHT = 150;
const AXIS = { stroke: "#8b96a5", grid: { stroke: "#222b36", width: 1 }, ticks: { stroke: "#2a3441", width: 1 }, font: "11px system-ui, sans-serif" };

/** One metric over time, drawn by uPlot on a canvas; new points are added in place. */
export function MetricChart({ label, x, y, color }: { label: string; x: number[]; y: (number | null)[]; color: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // The newest points, for a chart created again (new label or colour) after they arrived.
  const data = useRef<uPlot.AlignedData>([x, y]);

  // Before the effect that creates the chart: on a commit that does both, it starts current.
  useEffect(() => {
    data.current = [x, y];
    plot.current?.setData([x, y]);
  }, [x, y]);

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height: HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [{}, { label, stroke: color, width: 1.5, fill: `${color}22`, points: { show: false }, spanGaps: true }],
      axes: [AXIS, { ...AXIS, size: 48 }],
    };
    const chart = new uPlot(options, data.current, element);
    plot.current = chart;
    const resize = new ResizeObserver(() => chart.setSize({ width: Math.max(200, element.clientWidth), height: HEIGHT }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [label, color]);

  return <div className="chart__canvas" ref={box} data-testid="chart" data-points={x.length} />;
}
