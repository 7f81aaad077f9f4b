// Watching a run: the observer the launch calls, and the parts it is made of (FLOPs and MFU, device peaks,
// TensorBoard events, Prometheus metrics, the dashboard, straggler and hang detection, the run's files, status).

/** The observer a run calls at start, per attempt, per step and at the end. */
export { type ObserveEvent, type ObserverOptions, RunObserver, tensorboardScalars } from "./observer.ts";
/** The `observe:` section of a config. */
export { type ObserveConfig, observeConfig } from "./observe_config.ts";
/** Model FLOPs of a step and its TFLOP/s per device and MFU. */
export { sequenceFlops, stepFlops, type StepThroughput, stepThroughput } from "./flops.ts";
/** bf16 dense peaks of common accelerators, with config overrides. */
export { DEVICE_PEAKS_TFLOPS, devicePeakTflops } from "./device_peaks.ts";
/** TensorBoard event files (TFRecord, masked CRC32C, Event protos). */
export { crc32c, encodeEvent, maskedCrc32c, readTfRecords, TensorBoardWriter, tfRecord } from "./tensorboard_writer.ts";
/** Prometheus metrics of a run. */
export { RunMetrics } from "./metrics.ts";
/** The dashboard's HTTP server and page. */
export { type Dashboard, type DashboardOptions, newToken, serveDashboard } from "./dashboard_server.ts";
export { DASHBOARD_PAGE } from "./dashboard_page.ts";
/** What is known about a run, and its snapshot. */
export * from "./run_state.ts";
/** Straggler and hang detection. */
export { deviceType, rankGroupTimes, StragglerDetector, type StragglerOptions } from "./stragglers.ts";
export { type HangOptions, HangWatch } from "./hang_watch.ts";
/** A run's state from its files, and the status summary. */
export { loadRunState, readLatestCheckpoint, readObserveEvents } from "./run_files.ts";
export { statusLines } from "./status_summary.ts";
