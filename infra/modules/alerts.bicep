// Azure Monitor log alerts on the Function app's Application Insights: one scheduled-query rule per
// condition on-call must act on. Each query reads the service's structured log events by name (one JSON
// object per trace line, docs/runbook.md "Log events"); each rule's description links its runbook section
// ("Alerts" in docs/runbook.md), which says what it means and the command that resolves it.
// Resource format: https://learn.microsoft.com/azure/templates/microsoft.insights/2023-12-01/scheduledqueryrules

targetScope = 'resourceGroup'

@description('Short lowercase prefix for the rule names.')
param namePrefix string

@description('Azure region of the rules (that of Application Insights).')
param location string

@description('Resource id of the Function app\'s Application Insights component the rules query.')
param appInsightsId string

@description('Action groups notified when a rule fires (resource ids); empty: the alerts show in Azure Monitor only.')
param actionGroupIds array = []

@description('Address of docs/runbook.md as on-call reads it; each rule links its section there.')
param runbookUrl string = 'docs/runbook.md'

@description('Hours after which a rotation still running or waiting raises the "unfinished" alert.')
@minValue(1)
@maxValue(720)
param unfinishedHours int = 6

resource needsHuman 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-alert-needs-human'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: 'CMK rotation alert - Rotation stopped for a human'
    description: 'Rotation stopped for a human. Runbook: ${runbookUrl}#alert-rotation-needs-a-human'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "needs_human" | extend r = parse_json(message) | where tostring(r.event) == "rotation_stopped" and tostring(r.status) == "needs_human" | summarize stops = count() by rotation_id = tostring(r.rotation_id), key = tostring(r.key), error_code = tostring(r.error_code)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
      customProperties: {
        runbook: '${runbookUrl}#alert-rotation-needs-a-human'
      }
    }
  }
}

resource repeatedRollbacks 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-alert-repeated-rollbacks'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: 'CMK rotation alert - A key rolled back repeatedly'
    description: 'A key rolled back repeatedly. Runbook: ${runbookUrl}#alert-repeated-rollbacks'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "consumer_rolled_back" | extend r = parse_json(message) | where tostring(r.event) == "consumer_rolled_back" | summarize rollbacks = dcount(tostring(r.rotation_id)) by key = tostring(r.key) | where rollbacks >= 2'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
      customProperties: {
        runbook: '${runbookUrl}#alert-repeated-rollbacks'
      }
    }
  }
}

resource unfinished 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-alert-unfinished'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: 'CMK rotation alert - A rotation unfinished for hours'
    description: 'A rotation unfinished for hours. Runbook: ${runbookUrl}#alert-rotation-unfinished-for-hours'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "rotation_unfinished" | extend r = parse_json(message) | where tostring(r.event) == "rotation_unfinished" and todouble(r.age_hours) > ${unfinishedHours} | summarize age_hours = max(todouble(r.age_hours)) by rotation_id = tostring(r.rotation_id), key = tostring(r.key), status = tostring(r.status), stage = tostring(r.stage)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
      customProperties: {
        runbook: '${runbookUrl}#alert-rotation-unfinished-for-hours'
      }
    }
  }
}

resource poisonMessages 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-alert-poison-messages'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: 'CMK rotation alert - Re-wrap work items poisoned'
    description: 'Re-wrap work items poisoned. Runbook: ${runbookUrl}#alert-poison-messages'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "rewrap_item_poisoned" | extend r = parse_json(message) | where tostring(r.event) == "rewrap_item_poisoned" | summarize items = count() by rotation_id = tostring(r.rotation_id)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
      customProperties: {
        runbook: '${runbookUrl}#alert-poison-messages'
      }
    }
  }
}

resource expiringInUse 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-alert-expiring-in-use'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: 'CMK rotation alert - A consumer on a key version expiring within 7 days'
    description: 'A consumer on a key version expiring within 7 days. Runbook: ${runbookUrl}#alert-consumer-on-a-version-expiring-within-7-days'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT2H'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "consumer_version_expiring" | extend r = parse_json(message) | where tostring(r.event) == "consumer_version_expiring" and todouble(r.days_left) <= 7 | summarize days_left = min(todouble(r.days_left)) by key = tostring(r.key), consumer = tostring(r.consumer), version = tostring(r.version)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
      customProperties: {
        runbook: '${runbookUrl}#alert-consumer-on-a-version-expiring-within-7-days'
      }
    }
  }
}

@description('Names of the alert rules.')
output ruleNames array = [
  needsHuman.name
  repeatedRollbacks.name
  unfinished.name
  poisonMessages.name
  expiringInUse.name
]
