/**
 * Which CI job is running this process, from the variables CI systems set. `statelock run` sends it with
 * its session so that a lock's evidence can say "held by GitHub Actions run 1234" and the operator can open
 * the job instead of guessing from `Who`. Every value is a string; absent or empty variables are left out.
 */
export interface CiContext {
  /** `github-actions`, `gitlab-ci`, `buildkite` or `jenkins`. */
  provider?: string;
  /** The run / pipeline / build: GITHUB_RUN_ID, CI_PIPELINE_ID, BUILDKITE_BUILD_ID, Jenkins BUILD_ID. */
  runId?: string;
  /** The number people see when it differs from the ID (BUILDKITE_BUILD_NUMBER). */
  runNumber?: string;
  /** GITHUB_RUN_ATTEMPT. */
  runAttempt?: string;
  /** The job within the run: GITHUB_JOB (the job's key), CI_JOB_ID, BUILDKITE_JOB_ID. */
  jobId?: string;
  /** Repository, project path, pipeline slug or job name: GITHUB_REPOSITORY, CI_PROJECT_PATH, BUILDKITE_PIPELINE_SLUG, JOB_NAME. */
  project?: string;
  /** Where to look at the job. */
  url?: string;
}

const PROVIDER_NAMES: Record<string, { name: string; run: string }> = {
  'github-actions': { name: 'GitHub Actions', run: 'run' },
  'gitlab-ci': { name: 'GitLab CI', run: 'pipeline' },
  buildkite: { name: 'Buildkite', run: 'build' },
  jenkins: { name: 'Jenkins', run: 'build' },
};

/** The CI job this environment belongs to, or `{}` outside the CI systems statelock knows. */
export function ciContext(env: NodeJS.ProcessEnv): CiContext {
  const v = (name: string) => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const pick = (fields: { [K in keyof CiContext]: string | undefined }): CiContext => {
    const out: Record<string, string> = {};
    for (const [k, value] of Object.entries(fields)) if (value !== undefined) out[k] = value;
    return out as CiContext;
  };
  if (env.GITHUB_ACTIONS === 'true') {
    const server = (v('GITHUB_SERVER_URL') ?? 'https://github.com').replace(/\/+$/, '');
    const repo = v('GITHUB_REPOSITORY');
    const runId = v('GITHUB_RUN_ID');
    return pick({
      provider: 'github-actions',
      runId,
      runAttempt: v('GITHUB_RUN_ATTEMPT'),
      jobId: v('GITHUB_JOB'),
      project: repo,
      url: repo && runId ? `${server}/${repo}/actions/runs/${runId}` : undefined,
    });
  }
  if (env.GITLAB_CI === 'true') {
    return pick({ provider: 'gitlab-ci', runId: v('CI_PIPELINE_ID'), jobId: v('CI_JOB_ID'), project: v('CI_PROJECT_PATH'), url: v('CI_JOB_URL') });
  }
  if (env.BUILDKITE === 'true') {
    return pick({
      provider: 'buildkite',
      runId: v('BUILDKITE_BUILD_ID'),
      runNumber: v('BUILDKITE_BUILD_NUMBER'),
      jobId: v('BUILDKITE_JOB_ID'),
      project: v('BUILDKITE_PIPELINE_SLUG'),
      url: v('BUILDKITE_BUILD_URL'),
    });
  }
  if (v('JENKINS_URL') !== undefined) {
    return pick({ provider: 'jenkins', runId: v('BUILD_ID'), project: v('JOB_NAME'), url: v('BUILD_URL') });
  }
  return {};
}

/**
 * A CI context in words, for people: `GitHub Actions run 1234 (attempt 2), job deploy, acme/infra
 * (https://github.com/acme/infra/actions/runs/1234)`. Takes what the API returns (unknown values are
 * ignored); null when there is no provider.
 */
export function describeCi(ci: CiContext | Record<string, unknown> | null | undefined): string | null {
  if (!ci) return null;
  const fields = ci as Record<string, unknown>;
  const s = (name: string) => (typeof fields[name] === 'string' && fields[name] !== '' ? (fields[name] as string) : undefined);
  const provider = s('provider');
  if (!provider) return null;
  const known = PROVIDER_NAMES[provider] ?? { name: provider, run: 'run' };
  const runId = s('runId');
  const shown = s('runNumber') ?? runId;
  let text = shown ? `${known.name} ${known.run} ${provider === 'buildkite' && s('runNumber') ? `#${shown}` : shown}` : known.name;
  const attempt = s('runAttempt');
  if (attempt && attempt !== '1') text += ` (attempt ${attempt})`;
  const job = s('jobId');
  if (job) text += `, job ${job}`;
  const project = s('project');
  if (project) text += `, ${project}`;
  const url = s('url');
  if (url) text += ` (${url})`;
  return text;
}
