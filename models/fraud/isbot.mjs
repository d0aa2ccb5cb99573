// The baseline: npm isbot (pinned in package-lock.json) on a JSON array of user agents from
// stdin; prints a JSON array of booleans (true = isbot calls it a bot).
import { isbot } from 'isbot';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const userAgents = JSON.parse(input);
process.stdout.write(JSON.stringify(userAgents.map((ua) => isbot(ua))));
