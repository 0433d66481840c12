<?php
// A PHP worker (php-gearman, on libgearman): "php_reverse" reverses its workload, as in the talks.
//     php examples/mixed_languages/worker.php &
$worker = new GearmanWorker();
$worker->addServers(getenv('GEARMAN_SERVER') ?: '127.0.0.1:4730');
$worker->addFunction('php_reverse', function (GearmanJob $job) {
    return strrev($job->workload());
});
while ($worker->work()) {
}
fwrite(STDERR, 'worker.php: ' . $worker->error() . "\n");
exit(1);
