package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/cenkalti/backoff/v4"
)

// MaxBatch is SQS's limit on entries per batch call and messages per receive.
const MaxBatch = 10

// Attribute names set on dead-lettered messages.
const (
	AttrReason        = "keymigrate-reason"
	AttrError         = "keymigrate-error"
	AttrPhotoID       = "keymigrate-photo-id"
	AttrSourceMessage = "keymigrate-source-message-id"
	AttrReceiveCount  = "keymigrate-receive-count"
)

// Queue is one SQS queue.
type Queue struct {
	client *sqs.Client
	url    string
}

// New returns the queue at url.
func New(client *sqs.Client, url string) *Queue { return &Queue{client: client, url: url} }

// URL is the queue's URL.
func (q *Queue) URL() string { return q.url }

// Received is a delivered message.
type Received struct {
	ID            string
	ReceiptHandle string
	Body          string
	ReceiveCount  int
	Attributes    map[string]string // message attributes (string values)
}

// BatchError reports the entries of a batch send that still failed after retries.
type BatchError struct {
	Failed map[int]string // index in the batch -> error
}

func (e *BatchError) Error() string {
	parts := make([]string, 0, len(e.Failed))
	for i, msg := range e.Failed {
		parts = append(parts, fmt.Sprintf("entry %d: %s", i, msg))
	}
	return fmt.Sprintf("%d of the batch's messages were not sent: %s", len(e.Failed), strings.Join(parts, "; "))
}

// SendBatch sends up to MaxBatch bodies in one call, retrying only the entries
// SQS reports as failed (and the whole call on a transport error), with
// exponential backoff, until maxElapsed. A *BatchError lists what was not sent.
func (q *Queue) SendBatch(ctx context.Context, bodies []string, maxElapsed time.Duration) error {
	if len(bodies) > MaxBatch {
		return fmt.Errorf("send batch: %d messages, SQS takes at most %d", len(bodies), MaxBatch)
	}
	pending := make(map[int]bool, len(bodies))
	for i := range bodies {
		pending[i] = true
	}
	lastErr := map[int]string{}
	op := func() error {
		entries := make([]types.SendMessageBatchRequestEntry, 0, len(pending))
		for i := range pending {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(bodies[i])})
		}
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q.url, Entries: entries})
		if err != nil {
			for i := range pending {
				lastErr[i] = err.Error()
			}
			return err
		}
		for _, ok := range out.Successful {
			i, _ := strconv.Atoi(aws.ToString(ok.Id))
			delete(pending, i)
			delete(lastErr, i)
		}
		var permanent bool
		for _, f := range out.Failed {
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			lastErr[i] = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
			if f.SenderFault {
				permanent = true
			}
		}
		if len(pending) == 0 {
			return nil
		}
		err = &BatchError{Failed: lastErr}
		if permanent {
			// The request itself is wrong (too large, invalid characters):
			// retrying cannot help.
			return backoff.Permanent(err)
		}
		return err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxElapsedTime = maxElapsed
	if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err != nil {
		if len(pending) > 0 {
			return fmt.Errorf("send batch to %s: %w", q.url, &BatchError{Failed: lastErr})
		}
		return fmt.Errorf("send batch to %s: %w", q.url, err)
	}
	return nil
}

// Send sends one message with string attributes.
func (q *Queue) Send(ctx context.Context, body string, attrs map[string]string) error {
	in := &sqs.SendMessageInput{QueueUrl: &q.url, MessageBody: &body}
	if len(attrs) > 0 {
		in.MessageAttributes = map[string]types.MessageAttributeValue{}
		for k, v := range attrs {
			if v == "" {
				continue
			}
			in.MessageAttributes[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
	}
	if _, err := q.client.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send to %s: %w", q.url, err)
	}
	return nil
}

// Receive long-polls for up to max messages (at most MaxBatch), hiding them for
// visibility.
func (q *Queue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]Received, error) {
	if max > MaxBatch {
		max = MaxBatch
	}
	in := &sqs.ReceiveMessageInput{
		QueueUrl:            &q.url,
		MaxNumberOfMessages: int32(max),
		WaitTimeSeconds:     int32(wait / time.Second),
		// The receive count is asked for under both names: SQS answers
		// either, and a server that knows only the deprecated AttributeNames
		// (local-aws-sqs 2.0.2) would otherwise report 0, and the worker
		// would never see a message's last delivery (docs/local-stack.md).
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		//nolint:staticcheck // deprecated by SQS, still answered; see above
		AttributeNames:        []types.QueueAttributeName{types.QueueAttributeName(types.MessageSystemAttributeNameApproximateReceiveCount)},
		MessageAttributeNames: []string{"All"},
	}
	if visibility > 0 {
		in.VisibilityTimeout = int32(visibility / time.Second)
	}
	out, err := q.client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("receive from %s: %w", q.url, err)
	}
	msgs := make([]Received, 0, len(out.Messages))
	for _, m := range out.Messages {
		r := Received{ID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body), Attributes: map[string]string{}}
		if c, ok := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]; ok {
			r.ReceiveCount, _ = strconv.Atoi(c)
		}
		for k, v := range m.MessageAttributes {
			if v.StringValue != nil {
				r.Attributes[k] = *v.StringValue
			}
		}
		msgs = append(msgs, r)
	}
	return msgs, nil
}

// Delete removes a message after it was handled.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	if _, err := q.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &receipt}); err != nil {
		return fmt.Errorf("delete message from %s: %w", q.url, err)
	}
	return nil
}

// ChangeVisibility hides a message for d from now (0 makes it visible at once).
func (q *Queue) ChangeVisibility(ctx context.Context, receipt string, d time.Duration) error {
	secs := int32(d / time.Second)
	if secs > 43200 {
		secs = 43200 // SQS's maximum: 12 hours
	}
	if _, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &q.url, ReceiptHandle: &receipt, VisibilityTimeout: secs}); err != nil {
		return fmt.Errorf("change visibility of message in %s: %w", q.url, err)
	}
	return nil
}

// Depth is a queue's approximate message counts.
type Depth struct {
	Visible, InFlight, Delayed int64
}

// Total is all messages the queue holds.
func (d Depth) Total() int64 { return d.Visible + d.InFlight + d.Delayed }

// Depth reads the queue's approximate message counts.
func (q *Queue) Depth(ctx context.Context) (Depth, error) {
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}})
	if err != nil {
		return Depth{}, fmt.Errorf("read depth of %s: %w", q.url, err)
	}
	n := func(a types.QueueAttributeName) int64 {
		v, _ := strconv.ParseInt(out.Attributes[string(a)], 10, 64)
		return v
	}
	return Depth{
		Visible:  n(types.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// Attributes returns all of the queue's attributes.
func (q *Queue) Attributes(ctx context.Context) (map[string]string, error) {
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		return nil, fmt.Errorf("read attributes of %s: %w", q.url, err)
	}
	return out.Attributes, nil
}

// DefaultMaxReceiveCount is the main queue's maxReceiveCount that `migratectl
// setup` sets and `migratectl dlq list` assumes: deliveries before the queue
// moves a message to the DLQ. Only real failures spend them (a worker hands
// back what it stops as fresh messages), leaving about an hour of retries for
// a failing photo (docs/guarantees.md, section 8).
const DefaultMaxReceiveCount = 10

// SetupInput names the queues to create.
type SetupInput struct {
	Name              string
	DLQName           string
	MaxReceiveCount   int
	VisibilityTimeout time.Duration
	// DLQRetention is how long dead-lettered messages are kept (SQS maximum 14 days).
	DLQRetention time.Duration
}

// Setup creates (or updates) the main queue and the dead-letter queue, with the
// main queue's redrive policy pointing at the DLQ. It returns their URLs.
func Setup(ctx context.Context, client *sqs.Client, in SetupInput) (mainURL, dlqURL string, err error) {
	if in.MaxReceiveCount <= 0 {
		return "", "", errors.New("setup queues: max receive count must be at least 1")
	}
	if in.DLQRetention <= 0 {
		in.DLQRetention = 14 * 24 * time.Hour
	}
	dlqURL, err = ensureQueue(ctx, client, in.DLQName, map[string]string{
		string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(int(in.DLQRetention / time.Second)),
	})
	if err != nil {
		return "", "", err
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &dlqURL, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", "", fmt.Errorf("read ARN of %s: %w", dlqURL, err)
	}
	redrive, _ := json.Marshal(map[string]any{
		"deadLetterTargetArn": attrs.Attributes[string(types.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     strconv.Itoa(in.MaxReceiveCount),
	})
	mainURL, err = ensureQueue(ctx, client, in.Name, map[string]string{
		string(types.QueueAttributeNameRedrivePolicy):     string(redrive),
		string(types.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(in.VisibilityTimeout / time.Second)),
		// SQS keeps messages 4 days by default; a migration paused over a long
		// weekend must not lose its backlog.
		string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(14 * 24 * 3600),
	})
	if err != nil {
		return "", "", err
	}
	return mainURL, dlqURL, nil
}

// ensureQueue creates the queue, or, if it exists, sets its attributes: SQS
// refuses CreateQueue for an existing queue with different attributes, and a
// re-run of setup with new values must converge rather than fail.
func ensureQueue(ctx context.Context, client *sqs.Client, name string, attrs map[string]string) (string, error) {
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	var missing *types.QueueDoesNotExist
	switch {
	case err == nil:
		url := aws.ToString(got.QueueUrl)
		if _, err := client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: attrs}); err != nil {
			return "", fmt.Errorf("set attributes of queue %s: %w", name, err)
		}
		return url, nil
	case !errors.As(err, &missing):
		return "", fmt.Errorf("look up queue %s: %w", name, err)
	}
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// DeleteByName deletes the named queue if it exists (development resets only).
func DeleteByName(ctx context.Context, client *sqs.Client, name string) error {
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up queue %s: %w", name, err)
	}
	if _, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: got.QueueUrl}); err != nil {
		return fmt.Errorf("delete queue %s: %w", name, err)
	}
	return nil
}

// DeleteBatch deletes up to MaxBatch messages by receipt handle and returns
// the handles SQS did not delete, with the reason.
func (q *Queue) DeleteBatch(ctx context.Context, receipts []string) (map[string]string, error) {
	if len(receipts) == 0 {
		return nil, nil
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r)}
	}
	out, err := q.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q.url, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("delete %d messages from %s: %w", len(receipts), q.url, err)
	}
	failed := map[string]string{}
	for _, f := range out.Failed {
		i, _ := strconv.Atoi(aws.ToString(f.Id))
		failed[receipts[i]] = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
	}
	return failed, nil
}

// ARN returns the queue's ARN.
func (q *Queue) ARN(ctx context.Context) (string, error) {
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", fmt.Errorf("read ARN of %s: %w", q.url, err)
	}
	return out.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}

// StartMove asks SQS to move every message of this queue (a DLQ) back to dest
// with StartMessageMoveTask, and returns the task handle. Servers that do not
// implement it return an error; callers fall back to moving batches.
func (q *Queue) StartMove(ctx context.Context, dest *Queue) (string, error) {
	src, err := q.ARN(ctx)
	if err != nil {
		return "", err
	}
	dst, err := dest.ARN(ctx)
	if err != nil {
		return "", err
	}
	out, err := q.client.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: &src, DestinationArn: &dst})
	if err != nil {
		return "", fmt.Errorf("start message move task from %s: %w", q.url, err)
	}
	return aws.ToString(out.TaskHandle), nil
}

// MoveTaskStatus is the status SQS reports for a message move task.
type MoveTaskStatus string

// The statuses of a message move task (SQS's ListMessageMoveTasks).
const (
	// MoveTaskNone: the queue has no move task.
	MoveTaskNone       MoveTaskStatus = ""
	MoveTaskRunning    MoveTaskStatus = "RUNNING"
	MoveTaskCompleted  MoveTaskStatus = "COMPLETED"
	MoveTaskCancelling MoveTaskStatus = "CANCELLING"
	MoveTaskCancelled  MoveTaskStatus = "CANCELLED"
	MoveTaskFailed     MoveTaskStatus = "FAILED"
)

// Ended reports whether the task will move no more messages (whether it
// completed or not).
func (s MoveTaskStatus) Ended() bool { return s != MoveTaskNone && s != MoveTaskRunning }

// MoveStatus reports the newest move task of this queue: its status and the
// messages moved so far.
func (q *Queue) MoveStatus(ctx context.Context) (MoveTaskStatus, int64, error) {
	src, err := q.ARN(ctx)
	if err != nil {
		return "", 0, err
	}
	out, err := q.client.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: &src, MaxResults: aws.Int32(1)})
	if err != nil {
		return "", 0, fmt.Errorf("list message move tasks of %s: %w", q.url, err)
	}
	if len(out.Results) == 0 {
		return "", 0, nil
	}
	r := out.Results[0]
	return MoveTaskStatus(aws.ToString(r.Status)), r.ApproximateNumberOfMessagesMoved, nil
}

// SendDelayed sends body as a new message that becomes visible after delay
// (SQS allows at most 15 minutes).
func (q *Queue) SendDelayed(ctx context.Context, body string, delay time.Duration) error {
	secs := int32(min(delay, 15*time.Minute) / time.Second)
	if _, err := q.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q.url, MessageBody: &body, DelaySeconds: secs}); err != nil {
		return fmt.Errorf("send to %s: %w", q.url, err)
	}
	return nil
}

// MaxReceiveCount returns the maxReceiveCount of the queue's redrive policy
// (0 when it has none).
func (q *Queue) MaxReceiveCount(ctx context.Context) (int, error) {
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		return 0, fmt.Errorf("read the redrive policy of %s: %w", q.url, err)
	}
	raw := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if raw == "" {
		return 0, nil
	}
	var p struct {
		MaxReceiveCount json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return 0, fmt.Errorf("parse the redrive policy of %s: %w", q.url, err)
	}
	// SQS writes it as a number or as a string, depending on who set it.
	n, err := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	if err != nil {
		return 0, fmt.Errorf("parse maxReceiveCount %s of %s: %w", p.MaxReceiveCount, q.url, err)
	}
	return n, nil
}
