// Starts local-aws-sqs, the second SQS-compatible server of the local stack:
// unlike fauxqs it implements message move tasks (StartMessageMoveTask), which
// `migratectl dlq redrive` uses. PORT chooses the port; it listens on
// 127.0.0.1 only. Queues and messages are kept in memory.
import { createSqsServer } from 'local-aws-sqs';

const port = Number(process.env.PORT || 9325);
await createSqsServer({
  port,
  hostname: '127.0.0.1',
  // Tests create and delete uniquely named queues; AWS's 60 seconds before a
  // deleted queue's name can be reused would only slow demo resets down.
  emulateQueueCreationLifecycle: false,
});
console.log(`local-aws-sqs listening on 127.0.0.1:${port}`);

// Nothing to flush: SIGTERM's default action (exit) is how stack.sh stops it.
