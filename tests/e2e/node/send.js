// Sends a browsing session to the receiver through Segment's own Node code, for
// tests/e2e/test_segment_clients.py. Usage: node send.js <command> '<options as JSON>'.
//
//   analytics-node   {host, path, writeKey, anonymousId, userId, email, flushAt}
//     Segment's server library (@segment/analytics-node), as a customer's backend uses it.
//   webhook-actions  {url, sharedSecret, anonymousId, userId, email, batch, deliveries}
//     The Webhooks (Actions) destination's Send action (@segment/action-destinations), run by
//     Segment's actions runtime (@segment/actions-core) the way Segment runs it for a customer.
//
// Prints one JSON object on stdout; exits non-zero when anything was not delivered.
'use strict'

const { Analytics } = require('@segment/analytics-node')
const { createTestEvent, Destination } = require('@segment/actions-core')
// The one destination, not the package's index: that loads every destination Segment has.
const webhook = require('@segment/action-destinations/dist/destinations/webhook').default

// A visitor reads the pricing page, requests a demo, signs up (identify with an email), then
// the backend records an event under the userId only.
async function analyticsNode({ host, path, writeKey, anonymousId, userId, email, flushAt }) {
  const analytics = new Analytics({
    writeKey,
    host,
    path,
    flushAt,
    flushInterval: 200,
    httpRequestTimeout: 5000,
    // A rejected batch must fail the run, not be retried with backoff for hours.
    maxRetries: 0
  })
  const responses = []
  const errors = []
  analytics.on('http_response', ({ status, url }) => responses.push({ status, url }))
  analytics.on('error', (error) => errors.push(String(error.reason ?? error.code ?? error)))

  const messageIds = []
  const delivered = (error, ctx) => {
    if (error) errors.push(String(error.reason ?? error))
    else messageIds.push(ctx.event.messageId)
  }
  analytics.page({ anonymousId, name: 'Pricing', properties: { path: '/pricing' } }, delivered)
  analytics.track({ anonymousId, event: 'Pricing Viewed', properties: { plan: 'pro' } }, delivered)
  analytics.track({ anonymousId, event: 'Demo Requested', properties: { form: 'demo' } }, delivered)
  analytics.identify({ anonymousId, userId, traits: { email, name: 'Ada Lovelace' } }, delivered)
  analytics.track({ userId, event: 'Workspace Created', properties: { seats: 3 } }, delivered)
  await analytics.closeAndFlush({ timeout: 20000 })

  const failed = errors.length > 0 || messageIds.length !== 5 ||
    responses.some(({ status }) => status !== 200)
  return { failed, messageIds, responses, errors }
}

// The same session as Segment's pipeline hands it to a destination: Segment's own sample event
// (context, receivedAt, sentAt, ...) with the session's fields. Anonymous events have no userId.
function sessionEvents({ anonymousId, userId, email }) {
  const anonymous = (fields) => {
    const event = createTestEvent({ anonymousId, ...fields })
    delete event.userId
    return event
  }
  return [
    anonymous({ type: 'page', event: undefined, name: 'Pricing', properties: { path: '/pricing' } }),
    anonymous({ type: 'track', event: 'Pricing Viewed', properties: { plan: 'pro' } }),
    anonymous({ type: 'track', event: 'Demo Requested', properties: { form: 'demo' } }),
    createTestEvent({
      type: 'identify',
      event: undefined,
      anonymousId,
      userId,
      traits: { email, name: 'Ada Lovelace' }
    }),
    createTestEvent({ type: 'track', event: 'Workspace Created', anonymousId: undefined, userId })
  ]
}

// Segment's runtime hands the destination its settings, one subscription (the user's mapping,
// with the field defaults the Segment app fills in), and the events, one by one or as a batch.
// Each delivery sends the same events again, as Segment does when it retries.
async function webhookActions({ url, sharedSecret, batch, deliveries = 1, ...visitor }) {
  const events = sessionEvents(visitor)
  const destination = new Destination(webhook)
  const defaults = Object.fromEntries(
    Object.entries(webhook.actions.send.fields)
      .filter(([, field]) => field.default !== undefined)
      .map(([key, field]) => [key, field.default])
  )
  const settings = {
    sharedSecret,
    subscription: {
      subscribe: 'type = "track" or type = "page" or type = "identify"',
      partnerAction: 'send',
      mapping: { ...defaults, url, method: 'POST' }
    }
  }
  const responses = []
  const errors = []
  const collect = () => {
    for (const response of destination.responses.splice(0)) {
      responses.push({
        status: response.status,
        signature: response.request.headers.get('x-signature'),
        body: response.data ?? response.content
      })
    }
  }
  for (let n = 0; n < deliveries; n++) {
    try {
      if (batch) {
        const [{ multistatus }] = await destination.onBatch(events, settings)
        for (const status of multistatus) {
          if (status.status !== 200) errors.push(JSON.stringify(status))
        }
      } else {
        for (const event of events) await destination.onEvent(event, settings)
      }
    } catch (error) {
      errors.push(`${error.name}: ${error.message} (${error.response?.status ?? 'no response'})`)
    }
    collect()
  }
  const messageIds = events.map((event) => event.messageId)
  return { failed: errors.length > 0, messageIds, responses, errors }
}

async function main() {
  const [command, options] = process.argv.slice(2)
  const run = { 'analytics-node': analyticsNode, 'webhook-actions': webhookActions }[command]
  if (!run) throw new Error(`unknown command ${command}`)
  const result = await run(JSON.parse(options))
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exitCode = result.failed ? 1 : 0
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 2
})
