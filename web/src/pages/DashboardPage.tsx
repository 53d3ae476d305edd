import { AlertsTable } from "../components/AlertsTable.js";
import { DeviceTable } from "../components/DeviceTable.js";
import { ErrorBoundary } from "../components/ErrorBoundary.js";
import { RecentActivity } from "../components/RecentActivity.js";
import { StatCards } from "../components/StatCards.js";

/** The fleet overview: stat cards, open alerts with their recent activity, and devices, all live. */
export function DashboardPage() {
  return (
    <div className="page page--dashboard" data-testid="dashboard">
      <h1 className="visually-hidden" tabIndex={-1}>Fleet overview</h1>
      <ErrorBoundary label="Summary">
        <StatCards />
      </ErrorBoundary>
      <div className="dashboard-grid">
        <div className="dashboard-column">
          <AlertsTable />
          <RecentActivity />
        </div>
        <DeviceTable />
      </div>
    </div>
  );
}
