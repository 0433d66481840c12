<?php
// A PHP client of the Python worker: php examples/mixed_languages/client.php "hello world"  -> Hello World
$client = new GearmanClient();
$client->addServers(getenv('GEARMAN_SERVER') ?: '127.0.0.1:4730');
$result = $client->doNormal('py_title', $argv[1] ?? 'hello world');
if ($client->returnCode() != GEARMAN_SUCCESS) {
    fwrite(STDERR, 'client.php: ' . $client->error() . "\n");
    exit(1);
}
print $result . "\n";
