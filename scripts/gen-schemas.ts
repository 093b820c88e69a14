// Regenerates the JSON Schemas checked into schema/ from their zod models (npm run schemas).
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {z} from 'zod'
import {configJsonSchemaText} from '../src/lib/config/json-schema.js'
import {clusterStatusSchema} from '../src/lib/ops/status-schema.js'

const dir = path.resolve(import.meta.dirname, '..', 'schema')
writeFileSync(path.join(dir, 'status.schema.json'), JSON.stringify(z.toJSONSchema(clusterStatusSchema), null, 2) + '\n')
writeFileSync(path.join(dir, 'hactl.schema.json'), configJsonSchemaText())
console.log('wrote schema/status.schema.json and schema/hactl.schema.json')
