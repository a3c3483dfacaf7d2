# A service that ignores SIGTERM must not hold shutdown past its bound.
shuma ps scenario | grep -q stubborn && echo "SCENARIO term-ignore: stubborn is running"
poweroff
