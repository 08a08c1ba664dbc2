package store

// CronSchedule says when a job runs: Kind "at" (At, an RFC 3339 time),
// "every" (EveryMs from AnchorMs) or "cron" (a 5-field Expr in the IANA
// zone TZ, each activation shifted by a fixed offset below StaggerMs).
type CronSchedule struct {
	Kind      string `json:"kind"`
	At        string `json:"at,omitempty"`
	EveryMs   int64  `json:"everyMs,omitempty"`
	AnchorMs  *int64 `json:"anchorMs,omitempty"`
	Expr      string `json:"expr,omitempty"`
	TZ        string `json:"tz,omitempty"`
	StaggerMs *int64 `json:"staggerMs,omitempty"`
}

// CronPayload is what a run does: Kind "systemEvent" (Text is queued for
// the agent's next heartbeat) or "agentTurn" (Message runs as an agent
// turn).
type CronPayload struct {
	Kind           string   `json:"kind"`
	Text           string   `json:"text,omitempty"`
	Message        string   `json:"message,omitempty"`
	TimeoutSeconds *float64 `json:"timeoutSeconds,omitempty"`
	// Accepted for compatibility; clawgate's agents have no tool or
	// context switches, so they change nothing.
	Thinking            string   `json:"thinking,omitempty"`
	LightContext        *bool    `json:"lightContext,omitempty"`
	ToolsAllow          []string `json:"toolsAllow,omitempty"`
	ToolsAllowIsDefault *bool    `json:"toolsAllowIsDefault,omitempty"`
}

// CronDelivery says where an agentTurn's reply goes: Mode "none", or
// "announce" to Channel/To (through AccountID, in ThreadID).
type CronDelivery struct {
	Mode       string `json:"mode"`
	Channel    string `json:"channel,omitempty"`
	To         string `json:"to,omitempty"`
	AccountID  string `json:"accountId,omitempty"`
	ThreadID   string `json:"threadId,omitempty"`
	BestEffort *bool  `json:"bestEffort,omitempty"`
}

// CronJobState is the scheduler's bookkeeping for a job.
type CronJobState struct {
	NextRunAtMs       int64  `json:"nextRunAtMs,omitempty"`
	RunningAtMs       int64  `json:"runningAtMs,omitempty"`
	LastRunAtMs       int64  `json:"lastRunAtMs,omitempty"`
	LastRunStatus     string `json:"lastRunStatus,omitempty"` // ok, error, skipped
	LastError         string `json:"lastError,omitempty"`
	LastDurationMs    *int64 `json:"lastDurationMs,omitempty"`
	ConsecutiveErrors *int   `json:"consecutiveErrors,omitempty"`
	LastDelivered     *bool  `json:"lastDelivered,omitempty"`
	LastDeliveryError string `json:"lastDeliveryError,omitempty"`
	// LastDeliveryStatus: delivered, not-delivered or not-requested.
	LastDeliveryStatus string `json:"lastDeliveryStatus,omitempty"`
}

// CronJob is one scheduled job as stored (OpenClaw's CronJob shape).
type CronJob struct {
	ID             string        `json:"id"`
	Name           string        `json:"name"`
	DisplayName    string        `json:"displayName,omitempty"`
	Description    string        `json:"description,omitempty"`
	AgentID        string        `json:"agentId,omitempty"`
	SessionKey     string        `json:"sessionKey,omitempty"`
	Enabled        bool          `json:"enabled"`
	DeleteAfterRun *bool         `json:"deleteAfterRun,omitempty"`
	CreatedAtMs    int64         `json:"createdAtMs"`
	UpdatedAtMs    int64         `json:"updatedAtMs"`
	Schedule       CronSchedule  `json:"schedule"`
	SessionTarget  string        `json:"sessionTarget"`
	WakeMode       string        `json:"wakeMode"`
	Payload        CronPayload   `json:"payload"`
	Delivery       *CronDelivery `json:"delivery,omitempty"`
	State          CronJobState  `json:"state"`
}

// CronRun is one finished run in a job's history (OpenClaw's
// CronRunLogEntry shape).
type CronRun struct {
	Ts             int64  `json:"ts"`
	JobID          string `json:"jobId"`
	Action         string `json:"action"` // always "finished"
	Status         string `json:"status,omitempty"`
	Error          string `json:"error,omitempty"`
	Summary        string `json:"summary,omitempty"`
	Delivered      *bool  `json:"delivered,omitempty"`
	DeliveryStatus string `json:"deliveryStatus,omitempty"`
	DeliveryError  string `json:"deliveryError,omitempty"`
	SessionKey     string `json:"sessionKey,omitempty"`
	RunID          string `json:"runId,omitempty"`
	RunAtMs        int64  `json:"runAtMs,omitempty"`
	DurationMs     *int64 `json:"durationMs,omitempty"`
	NextRunAtMs    int64  `json:"nextRunAtMs,omitempty"`
	JobName        string `json:"jobName,omitempty"`
}

// CronStore keeps cron jobs and their run history. Each call is one
// durable transaction; values are copies owned by the caller.
type CronStore interface {
	// CronJobs returns every job, by id.
	CronJobs() ([]CronJob, error)
	// PutCronJob creates or replaces a job.
	PutCronJob(job CronJob) error
	// DeleteCronJob removes a job and its history; ErrNotFound when there
	// is no such job.
	DeleteCronJob(id string) error
	// RecordCronRun replaces the job (its updated state) and appends run
	// to its history, dropping the oldest entries beyond keep (keep <= 0
	// keeps all), both in one transaction. ErrNotFound when the job is
	// gone (removed while it ran): nothing is written then.
	RecordCronRun(job CronJob, run CronRun, keep int) error
	// CronRuns returns the history of one job (jobID != "") or of every
	// job, oldest first.
	CronRuns(jobID string) ([]CronRun, error)
}
